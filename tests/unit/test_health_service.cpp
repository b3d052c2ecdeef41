// Two health services of one communicator (src/health/health_service.h) on loopback, asking each
// other: a healthy rank's status, a broken one's, and a closing one's. A rank whose communicator
// is being destroyed answers for a moment before its listener closes; that answer must read as
// "gone", never as "broken" (a send-only peer checking that its data was taken took it for a
// failure at the end of a successful perf run).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "bootstrap/socket.h"
#include "health/health_service.h"

namespace chorus {
namespace {

struct Pair {
  std::unique_ptr<HealthService> svc[2];
  std::shared_ptr<CauseBoard> board[2];
  std::vector<PeerCard> cards = std::vector<PeerCard>(2);

  Pair() {
    HealthIdentity id;
    id.commId = 0x5eed;
    id.secret[0] = 17;
    id.secret[1] = 42;
    id.nranks = 2;
    for (int r = 0; r < 2; ++r) {
      id.rank = r;
      svc[r] = std::make_unique<HealthService>(id, parseAddress("127.0.0.1", 0), 0, 10.0);
      cards[r].rank = r;
      cards[r].healthAddr = svc[r]->address();
      board[r] = std::make_shared<CauseBoard>();
    }
    for (int r = 0; r < 2; ++r) {
      RankStatus s;
      s.rank = r;
      s.state = RankState::Idle;
      s.startedSeq = s.finishedSeq = 7;
      svc[r]->start(cards, HealthHooks{[s] { return s; }, board[r]});
    }
  }
};

TEST(HealthService, APeerAnswersItsStatus) {
  Pair p;
  RankStatus got;
  ASSERT_EQ(p.svc[0]->status(1, Deadline::after(5), &got), HealthService::Reach::Answered);
  EXPECT_EQ(got.rank, 1);
  EXPECT_EQ(got.state, RankState::Idle);
  EXPECT_EQ(got.finishedSeq, 7u);
  EXPECT_FALSE(p.svc[0]->gone(1, Deadline::after(5)));
}

TEST(HealthService, APeerWhoseCommunicatorClosesIsGoneNotBroken) {
  Pair p;
  p.svc[1]->close();  // what the destructor does first; the listener still answers until it ends
  RankStatus got;
  EXPECT_EQ(p.svc[0]->status(1, Deadline::after(5), &got), HealthService::Reach::Gone);
  EXPECT_EQ(got.state, RankState::Closed);
  EXPECT_TRUE(p.svc[0]->gone(1, Deadline::after(5)));
  p.svc[1].reset();
  EXPECT_EQ(p.svc[0]->status(1, Deadline::after(5), &got), HealthService::Reach::Gone);
}

}  // namespace
}  // namespace chorus
