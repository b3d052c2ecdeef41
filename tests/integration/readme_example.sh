#!/usr/bin/env bash
# The C example in README.md must compile against the public header and link against
# libchorus, so that client code written from the docs builds.
set -euo pipefail
ROOT=$1
LIBDIR=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
awk '/^```c$/{on=1; next} /^```$/{on=0} on' "$ROOT/README.md" > "$WORK/example.c"
[ -s "$WORK/example.c" ] || { echo "no C example found in README.md"; exit 1; }
cat >> "$WORK/example.c" <<'MAIN'
int main(void) {
  chorusUniqueId id;
  if (chorusGetUniqueId(&id) != chorusSuccess) return 1;
  return allreduce_example(id, 0, 1);
}
MAIN
cc -std=c11 -Wall -Wextra -Werror -I"$ROOT/include" "$WORK/example.c" -L"$LIBDIR" -lchorus -Wl,-rpath,"$LIBDIR" -o "$WORK/example"
"$WORK/example"
echo "README example: compiles and runs (1 rank)"
