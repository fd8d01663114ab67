// A delegated service's cgroup v2 across a manager that leaves its domains
// serving and the next manager that systemd starts in the service's cgroup
// itself, played on a fake cgroup tree of plain files in a temp directory.
// The fake does what the kernel would between the steps by hand (moving a
// pid, showing "memory pids" once enabled, dropping a domain's limit files
// when its parent disables the controllers); what the tests check is which
// files the code writes, and what, in which case. The kernel's own rules
// (EBUSY) are not simulated: docs/sandbox.md says what is not tested.
#include "sandbox/cgroup.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>

#include <gtest/gtest.h>

namespace {

namespace fs = std::filesystem;
using ng::sandbox::CgroupParent;
using ng::sandbox::DomainCgroup;

constexpr pid_t kSelf = 4100;     // the manager
constexpr pid_t kDomain = 4242;   // a domain a previous manager left serving
constexpr uint64_t kMemory = uint64_t{256} << 20;
const std::string kName = "nicguard-00000000000000ab-driver-a";

class FakeService : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ng-cgroup-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/system.slice/nicguard.service";
    fs::create_directories(dir_);
    // What systemd gives a unit with Delegate=memory pids, the manager in it.
    put("cgroup.controllers", "cpu io memory pids\n");
    put("cgroup.subtree_control", "");
    put("cgroup.procs", std::to_string(kSelf) + "\n");
  }
  void TearDown() override { fs::remove_all(root_); }

  void put(const std::string& rel, const std::string& text) {
    fs::create_directories(fs::path(dir_ + "/" + rel).parent_path());
    std::ofstream(dir_ + "/" + rel) << text;
  }
  std::string get(const std::string& rel) const {
    std::ifstream in(dir_ + "/" + rel);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  bool has(const std::string& rel) const { return fs::exists(dir_ + "/" + rel); }
  std::map<std::string, CgroupParent> parents() const {
    return {{"memory", CgroupParent{dir_, true, false}}, {"pids", CgroupParent{dir_, true, false}}};
  }
  // The kernel's part once a manager moved into its leaf and enabled the controllers.
  void kernel_after_delegation() {
    put("cgroup.procs", "");
    put("manager/cgroup.procs", std::to_string(kSelf) + "\n");
    put("cgroup.subtree_control", "memory pids\n");
  }

  std::string root_, dir_;
};

TEST_F(FakeService, TheFirstManagerMovesIntoItsLeafAndEnablesTheControllers) {
  auto g = DomainCgroup::create_under(parents(), kName, kMemory, 1, kSelf);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(get("manager/cgroup.procs"), "0");
  EXPECT_EQ(get("cgroup.subtree_control"), "+memory +pids");
  EXPECT_EQ(get(kName + "/memory.max"), std::to_string(kMemory));
  EXPECT_EQ(get(kName + "/pids.max"), "1");
  EXPECT_EQ(g->procs_fds().size(), 1u);
}

TEST_F(FakeService, ASecondDomainFromTheLeafTouchesNeitherTheLeafNorTheControllers) {
  kernel_after_delegation();
  put("manager/cgroup.procs", "untouched");
  auto g = DomainCgroup::create_under(parents(), "nicguard-00000000000000ab-driver-b", kMemory, 1, kSelf);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(get("manager/cgroup.procs"), "untouched");
  EXPECT_EQ(get("cgroup.subtree_control"), "memory pids\n");
}

TEST_F(FakeService, ALeavingManagerGivesBackTheControllersItEnabled) {
  kernel_after_delegation();
  auto released = ng::sandbox::release_controllers_v2(dir_);
  ASSERT_TRUE(released) << released.error().message;
  EXPECT_EQ(*released, (std::vector<std::string>{"memory", "pids"}));
  EXPECT_EQ(get("cgroup.subtree_control"), "-memory -pids");
}

TEST_F(FakeService, OnlyThoseEnabledAreGivenBackAndNoneMeansNoWrite) {
  put("cgroup.subtree_control", "pids\n");
  auto one = ng::sandbox::release_controllers_v2(dir_);
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_EQ(*one, std::vector<std::string>{"pids"});
  EXPECT_EQ(get("cgroup.subtree_control"), "-pids");
  put("cgroup.subtree_control", "cpu\n");  // not ours: left as it is
  auto none = ng::sandbox::release_controllers_v2(dir_);
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(get("cgroup.subtree_control"), "cpu\n");
}

// The restart: manager 1 delegated and started a domain; it leaves and gives
// the controllers back; systemd starts manager 2 in the service's cgroup
// itself (not in the leaf), next to the serving domain's cgroup. Manager 2
// moves into the leaf again, enables the controllers and writes the adopted
// domain's limits again.
TEST_F(FakeService, TheNextManagerInTheServiceCgroupMovesBackAndReappliesTheLimits) {
  ASSERT_TRUE(DomainCgroup::create_under(parents(), kName, kMemory, 1, kSelf));
  kernel_after_delegation();
  put(kName + "/cgroup.procs", std::to_string(kDomain) + "\n");
  auto released = ng::sandbox::release_controllers_v2(dir_);
  ASSERT_TRUE(released) << released.error().message;
  // The kernel: controllers off, the domain's limit files gone; manager 1
  // exits, systemd puts manager 2 (a new pid) into the service's cgroup.
  put("cgroup.subtree_control", "");
  fs::remove(dir_ + "/" + kName + "/memory.max");
  fs::remove(dir_ + "/" + kName + "/pids.max");
  put("manager/cgroup.procs", "");
  constexpr pid_t kNext = 5100;
  put("cgroup.procs", std::to_string(kNext) + "\n");

  auto g = DomainCgroup::create_under(parents(), kName, kMemory, 1, kNext);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(get("manager/cgroup.procs"), "0") << "manager 2 did not move into the leaf";
  EXPECT_EQ(get("cgroup.subtree_control"), "+memory +pids");
  EXPECT_EQ(get(kName + "/memory.max"), std::to_string(kMemory));
  EXPECT_EQ(get(kName + "/pids.max"), "1");
  EXPECT_EQ(get(kName + "/cgroup.procs"), std::to_string(kDomain) + "\n") << "the domain was moved";
}

TEST_F(FakeService, AnotherProcessInTheServiceCgroupIsRefusedByName) {
  put("cgroup.procs", std::to_string(kSelf) + "\n777\n");
  auto g = DomainCgroup::create_under(parents(), kName, kMemory, 1, kSelf);
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message.find("it holds other processes (777)"), std::string::npos) << g.error().message;
  EXPECT_NE(g.error().message.find(dir_), std::string::npos) << g.error().message;
  EXPECT_FALSE(has("manager/cgroup.procs")) << "moved although it cannot delegate";
  EXPECT_EQ(get("cgroup.subtree_control"), "");
}

TEST_F(FakeService, AServiceWithoutTheControllersSaysWhichIsMissing) {
  put("cgroup.controllers", "cpu memory\n");
  auto g = DomainCgroup::create_under(parents(), kName, kMemory, 1, kSelf);
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message.find("has no pids controller"), std::string::npos) << g.error().message;
}

TEST_F(FakeService, TheCgroupRootNeedsNoLeaf) {
  auto g = DomainCgroup::create_under(
      {{"memory", CgroupParent{dir_, true, true}}, {"pids", CgroupParent{dir_, true, true}}}, kName, kMemory, 1, kSelf);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_FALSE(has("manager/cgroup.procs"));
  EXPECT_EQ(get("cgroup.subtree_control"), "+memory +pids");
}

}  // namespace
