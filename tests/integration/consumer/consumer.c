/* Links against an installed libchorus and runs a 1-rank all-reduce through the public API. */
#include <chorus/chorus.h>
#include <stdio.h>

int main(void) {
  chorusUniqueId id;
  chorusComm_t comm;
  int data[3] = {1, 2, 3}, out[3] = {0, 0, 0};
  if (chorusGetUniqueId(&id) != chorusSuccess || chorusCommInitRank(&comm, 1, id, 0) != chorusSuccess) {
    fprintf(stderr, "init failed: %s\n", chorusGetLastError(NULL));
    return 1;
  }
  if (chorusAllReduce(data, out, 3, chorusInt32, chorusSum, comm, NULL) != chorusSuccess || out[2] != 3) {
    fprintf(stderr, "allreduce failed: %s\n", chorusGetLastError(comm));
    return 1;
  }
  chorusCommDestroy(comm);
  printf("consumer ok\n");
  return 0;
}
