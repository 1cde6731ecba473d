// The descriptor budget's arithmetic and warning, and the probes on this process.
#include "proxy/descriptors.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <initializer_list>

#include "net/local_error.h"

namespace ringproxy {
namespace {

TEST(DescriptorBudget, TwoPerConnectionAfterWhatIsOpenAndTheTransientOnes) {
  // ulimit -n 100 with 20 open at start: (100 - 20 - 16) / 2.
  EXPECT_EQ((DescriptorBudget{100, 20}.connections()), 32u);
  EXPECT_EQ((DescriptorBudget{101, 20}.connections()), 32u);  // rounds down
  EXPECT_EQ((DescriptorBudget{1048576, 25}.connections()), 524267u);
  EXPECT_EQ((DescriptorBudget{100, 20}.needed(10000)), 20036u);
}

TEST(DescriptorBudget, TooFewStillServesOne) {
  EXPECT_EQ((DescriptorBudget{30, 20}.connections()), 1u);
  EXPECT_EQ((DescriptorBudget{38, 20}.connections()), 1u);
  EXPECT_EQ((DescriptorBudget{39, 20}.connections()), 1u);
  EXPECT_EQ((DescriptorBudget{40, 20}.connections()), 2u);
  EXPECT_EQ((DescriptorBudget{0, 20}.connections()), 1u);
}

TEST(DescriptorBudget, AChosenValueThatDoesNotFitIsAWarningNamingTheNumbers) {
  const ShortfallNote n = shortfall_note(DescriptorBudget{100, 20}, 10000, 100, /*chosen=*/true);
  EXPECT_TRUE(n.warn);
  EXPECT_EQ(n.text,
            "proxy.max_connections = 10000 needs about 20036 file descriptors (2 per connection, 20 open at "
            "start, 16 for health checks and admin) but RLIMIT_NOFILE is 100 (hard limit 100): about 32 "
            "connections can be served at once, more wait in the listen queue; raise the limit (ulimit -n, "
            "systemd LimitNOFILE=) or lower proxy.max_connections");
  EXPECT_NE(shortfall_note(DescriptorBudget{100, 20}, 33, RLIM_INFINITY, true).text.find("(hard limit unlimited)"),
            std::string::npos);
}

TEST(DescriptorBudget, TheDefaultThatDoesNotFitIsAnInfoLine) {
  // The case that warned on every start: a hard limit of 20000, the default 10000.
  const ShortfallNote n = shortfall_note(DescriptorBudget{20000, 25}, 10000, 20000, /*chosen=*/false);
  EXPECT_FALSE(n.warn);
  EXPECT_EQ(n.text,
            "the default proxy.max_connections = 10000 needs about 20041 file descriptors (2 per connection, 25 "
            "open at start, 16 for health checks and admin) but RLIMIT_NOFILE is 20000 (hard limit 20000): about "
            "9979 connections can be served at once, more wait in the listen queue; raise the limit (ulimit -n, "
            "systemd LimitNOFILE=) or lower proxy.max_connections");
  // Far short still serves some: info.
  EXPECT_FALSE(shortfall_note(DescriptorBudget{100, 20}, 10000, 100, false).warn);
}

TEST(DescriptorBudget, TheDefaultIsAWarningWhenNotOneConnectionFits) {
  // 20 open + 16 transient + 2 for one connection = 38.
  EXPECT_FALSE(shortfall_note(DescriptorBudget{38, 20}, 10000, 38, false).warn);
  EXPECT_TRUE(shortfall_note(DescriptorBudget{37, 20}, 10000, 37, false).warn);
  EXPECT_TRUE(shortfall_note(DescriptorBudget{10, 20}, 10000, 10, false).warn);
}

TEST(DescriptorBudget, NothingToSayWhenItFits) {
  EXPECT_EQ(shortfall_note(DescriptorBudget{100, 20}, 32, 100, true).text, "");  // 64 + 20 + 16 = 100
  EXPECT_FALSE(shortfall_note(DescriptorBudget{100, 20}, 32, 100, true).warn);
  EXPECT_NE(shortfall_note(DescriptorBudget{100, 20}, 33, 100, true).text, "");
  EXPECT_EQ(shortfall_note(DescriptorBudget{1048576, 25}, 10000, 1048576, false).text, "");
}

TEST(LocalError, WhatIsOursAndWhatIsTheNodes) {
  for (int e : std::initializer_list<int>{UV_EMFILE, UV_ENFILE, UV_ENOBUFS, UV_ENOMEM}) EXPECT_TRUE(is_local_resource_error(e)) << e;
  for (int e : std::initializer_list<int>{0, UV_ECONNREFUSED, UV_ECONNRESET, UV_ETIMEDOUT, UV_EHOSTUNREACH,
                                         UV_ENETUNREACH, UV_EOF}) {
    EXPECT_FALSE(is_local_resource_error(e)) << e;
  }
}

// On this process, with its soft limit lowered to what is open plus two and restored.
TEST(Descriptors, CountAndProbeAgainstARealLimit) {
  const auto open_now = count_open_descriptors();
  ASSERT_TRUE(open_now.has_value());
  const int spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(spare, 0);
  const auto with_spare = count_open_descriptors();
  ASSERT_TRUE(with_spare.has_value());
  EXPECT_EQ(*with_spare, *open_now + 1);

  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  // Holes below the highest open descriptor would make "open + 2" no bound: put the
  // limit just above the highest one instead, then count what is free under it.
  int highest = 0;
  for (int fd = 0; fd < 4096; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) highest = fd;
  }
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(highest) + 3;  // descriptors highest+1 and highest+2 are free
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  const uint64_t holes = highest + 1 - *with_spare;  // free numbers below the highest
  EXPECT_TRUE(descriptors_free(spare, static_cast<int>(holes + 2)));
  EXPECT_FALSE(descriptors_free(spare, static_cast<int>(holes + 3)));
  EXPECT_EQ(*count_open_descriptors(), *with_spare);  // the probes gave everything back
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ::close(spare);
}

}  // namespace
}  // namespace ringproxy
