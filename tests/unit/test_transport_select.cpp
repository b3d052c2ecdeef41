// Per-pair transport selection (src/core/transport_select.h): defaults, CHORUS_TRANSPORT forcing
// every class, CHORUS_TRANSPORT_MAP parsing and its errors, and the symmetric choice among the
// transports both ranks have.
#include <gtest/gtest.h>

#include "base/error.h"
#include "core/transport_select.h"

namespace chorus {
namespace {

uint32_t bits(std::initializer_list<TransportId> ids) {
  uint32_t b = 0;
  for (TransportId id : ids) b |= 1u << static_cast<unsigned>(id);
  return b;
}

TransportPolicy policy(const std::string& transport, const std::string& map, const std::string& plugin = "") {
  Config c;
  c.transport = transport;
  c.transportMap = map;
  c.netPlugin = plugin;
  return TransportPolicy::fromConfig(c);
}

TEST(TransportPolicy, DefaultsAreShmLocallyAndTcpAcrossHosts) {
  TransportPolicy p = policy("", "");
  EXPECT_EQ(p.describe(), "local=shm rack=tcp network=tcp");
  EXPECT_EQ(p.wanted(), bits({TransportId::Shm, TransportId::Tcp}));
  // A plugin named by CHORUS_NET_PLUGIN becomes the network transport, with no silent fallback.
  EXPECT_EQ(policy("", "", "ucx").describe(), "local=shm rack=plugin network=plugin");
}

TEST(TransportPolicy, ForcedTransportWinsOverTheMap) {
  EXPECT_EQ(policy("tcp", "network=ucx").describe(), "local=tcp rack=tcp network=tcp");
  EXPECT_EQ(policy("ofi", "").describe(), "local=ofi rack=ofi network=ofi");
}

TEST(TransportPolicy, MapSetsClassesAndRackFollowsNetwork) {
  EXPECT_EQ(policy("", "network=ucx|tcp").describe(), "local=shm rack=ucx|tcp network=ucx|tcp");
  EXPECT_EQ(policy("", "local=tcp,rack=ofi,network=ucx").describe(), "local=tcp rack=ofi network=ucx");
  EXPECT_EQ(policy("", "rack=ofi,network=ucx").describe(), "local=shm rack=ofi network=ucx");
  EXPECT_EQ(policy("", "network=ucx,rack=ofi").describe(), "local=shm rack=ofi network=ucx");
  EXPECT_EQ(policy("", "local=shm|tcp,,").describe(), "local=shm|tcp rack=tcp network=tcp");
}

TEST(TransportPolicy, BadMapsNameTheEntry) {
  for (const char* bad : {"network", "network=", "network=verbs", "wan=tcp", "network=tcp|tcp", "local=shm|"}) {
    try {
      policy("", bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), chorusInvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find("CHORUS_TRANSPORT_MAP"), std::string::npos) << e.what();
    }
  }
}

TEST(TransportPolicy, ChoiceIsTheFirstBothHaveAndIsSymmetric) {
  TransportPolicy p = policy("", "network=ofi|ucx|tcp");
  uint32_t all = bits({TransportId::Shm, TransportId::Tcp, TransportId::Ucx, TransportId::Ofi});
  uint32_t noOfi = bits({TransportId::Shm, TransportId::Tcp, TransportId::Ucx});
  uint32_t tcpOnly = bits({TransportId::Shm, TransportId::Tcp});
  EXPECT_EQ(p.choose(PairClass::Network, all, all, 0, 1), TransportId::Ofi);
  EXPECT_EQ(p.choose(PairClass::Network, all, noOfi, 0, 1), TransportId::Ucx);
  EXPECT_EQ(p.choose(PairClass::Network, noOfi, all, 1, 0), TransportId::Ucx);
  EXPECT_EQ(p.choose(PairClass::Network, tcpOnly, all, 0, 1), TransportId::Tcp);
  EXPECT_EQ(p.choose(PairClass::Local, all, tcpOnly, 0, 1), TransportId::Shm);
  TransportId id;
  EXPECT_TRUE(p.common(PairClass::Network, {all, noOfi, all}, &id));
  EXPECT_EQ(id, TransportId::Ucx);
  EXPECT_FALSE(policy("", "network=ucx").common(PairClass::Network, {all, tcpOnly}, &id));
}

TEST(TransportPolicy, NoSharedTransportIsAClearError) {
  TransportPolicy p = policy("", "network=ucx");
  try {
    p.choose(PairClass::Network, bits({TransportId::Shm, TransportId::Ucx}), bits({TransportId::Shm, TransportId::Tcp}), 2, 7);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), chorusInvalidUsage);
    std::string w = e.what();
    EXPECT_NE(w.find("ranks 2 and 7"), std::string::npos) << w;
    EXPECT_NE(w.find("rank 7 has shm,tcp"), std::string::npos) << w;
  }
  try {
    p.checkUsable(bits({TransportId::Shm, TransportId::Tcp}), "ucx: no device");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ucx: no device"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace chorus
