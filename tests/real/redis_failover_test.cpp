// SPDX-License-Identifier: BSL-1.0
// Real parts: keel::leader_follower over a real Redis primary and replica.
//
// The test starts two redis-server processes on 127.0.0.1 (free ports,
// `--save "" --appendonly no`, a temporary directory), makes B a replica of A,
// and writes through a leader_follower over {A, B} with hiredis: SET k_i
// (idempotent) and INCR counter (at most once). A -READONLY reply is a
// not_leader signal with no target, so the client probes the other member.
// It then switches roles twice (B primary, A its replica; then back) while
// it keeps writing, and checks that
//   - every acknowledged write is on the final primary (SETs and the counter),
//   - each call reached the new primary within one redirect,
//   - leader_changed fired once per switch.
// With no redis-server on PATH it prints why and exits 77 (ctest: skipped).
// Servers are killed on every path (RAII, and PR_SET_PDEATHSIG if the test dies).
#include <hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <keel/failover/leader_follower.hpp>
#include <keel/pipeline.hpp>
#include <keel/testing/recording_listener.hpp>

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

int failures = 0;

#define EXPECT(cond)                                                          \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                             \
    }                                                                         \
  } while (false)

/// redis-server on PATH, or empty.
std::string find_redis_server() {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const std::size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string candidate = dirs.substr(start, end - start) + "/redis-server";
    if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return {};
}

/// A port free on 127.0.0.1 when asked (bound to port 0, then released).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("bind");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// A temporary directory, removed with everything in it.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string pattern = (fs::temp_directory_path() / "keel-redis-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path = pattern;
  }
  ~temp_dir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

/// One redis-server child process, stopped (SIGTERM, then SIGKILL after 3 s) on destruction.
class redis_process {
 public:
  redis_process(const std::string& binary, int port, const fs::path& dir, const char* name)
      : port_(port), log_(dir / (std::string(name) + ".log")) {
    const std::string port_s = std::to_string(port);
    const std::string dir_s = dir.string();
    const std::string log_s = log_.string();
    const std::string pid_s = (dir / (std::string(name) + ".pid")).string();
    std::vector<std::string> args = {binary};
    const auto option = [&args](const char* name_of, std::string value) {
      args.push_back(std::string("--") + name_of);
      args.push_back(std::move(value));
    };
    option("port", port_s);
    option("bind", "127.0.0.1");
    option("save", "");  // no snapshots
    option("appendonly", "no");
    option("dir", dir_s);
    option("logfile", log_s);
    option("pidfile", pid_s);
    option("daemonize", "no");
    option("dbfilename", std::string(name) + ".rdb");
    option("repl-diskless-sync-delay", "0");  // a replica syncs at once, not after 5 s
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      // Dies with the test, whatever kills it.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~redis_process() { stop(); }
  redis_process(const redis_process&) = delete;
  redis_process& operator=(const redis_process&) = delete;

  int port() const { return port_; }
  const fs::path& log() const { return log_; }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto give_up = clock_type::now() + 3s;
    while (clock_type::now() < give_up) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(5ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int port_;
  fs::path log_;
};

struct context_deleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using connection = std::unique_ptr<redisContext, context_deleter>;
struct reply_deleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply = std::unique_ptr<redisReply, reply_deleter>;

connection connect(int port) {
  const timeval timeout{1, 0};
  connection c(redisConnectWithTimeout("127.0.0.1", port, timeout));
  if (!c || c->err != 0) return nullptr;
  redisSetTimeout(c.get(), timeval{2, 0});
  return c;
}

reply command(redisContext* c, const std::vector<std::string>& words) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& w : words) {
    argv.push_back(w.data());
    lens.push_back(w.size());
  }
  return reply(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data())));
}

/// Polls `done` every 10 ms until it holds or `limit` passes.
bool poll_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto give_up = clock_type::now() + limit;
  while (clock_type::now() < give_up) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

/// An administrative connection: PING until it answers (bounded).
connection admin(int port) {
  connection c;
  poll_until(
      [&] {
        c = connect(port);
        if (!c) return false;
        const reply r = command(c.get(), {"PING"});
        return r && r->type == REDIS_REPLY_STATUS && std::strcmp(r->str, "PONG") == 0;
      },
      5000ms);
  return c;
}

/// The value of `field` in INFO replication.
std::string info_field(redisContext* c, const std::string& field) {
  const reply r = command(c, {"INFO", "replication"});
  if (!r || r->type != REDIS_REPLY_STRING) return {};
  const std::string text(r->str, r->len);
  const std::size_t at = text.find(field + ":");
  if (at == std::string::npos) return {};
  const std::size_t from = at + field.size() + 1;
  return text.substr(from, text.find_first_of("\r\n", from) - from);
}

bool ok_reply(const reply& r) { return r && r->type != REDIS_REPLY_ERROR; }

// ---- the client side ----------------------------------------------------------

struct redis_endpoint {
  const char* name;
  int port;
};

/// A -READONLY (or other error) reply.
struct redis_error : std::runtime_error {
  explicit redis_error(const std::string& m) : std::runtime_error(m) {}
  bool readonly() const { return std::strncmp(what(), "READONLY", 8) == 0; }
};
/// The connection failed: the command may or may not have been applied.
struct redis_io_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// READONLY: "not the leader", no target (a replica does not say who leads).
struct readonly_signal {
  template <class R>
  keel::leader_signal operator()(const keel::outcome<R>& o, std::size_t) const {
    if (!o.has_exception()) return {};
    try {
      std::rethrow_exception(o.exception());
    } catch (const redis_error& e) {
      if (e.readonly()) return keel::leader_signal::not_leader();
    } catch (...) {
    }
    return {};
  }
};

/// One client connection per endpoint, made by the test; reconnected when broken.
struct client {
  std::vector<redis_endpoint> endpoints;
  std::vector<connection> conns;
  std::vector<std::size_t> reached;  // every member a call reached, in order

  long long run(const keel::context& ctx, const std::vector<std::string>& words) {
    const std::size_t i = ctx.target().index();
    const redis_endpoint* ep = ctx.target().get<redis_endpoint>();
    if (ep == nullptr) throw std::logic_error("no endpoint");
    reached.push_back(i);
    if (!conns[i] || conns[i]->err != 0) conns[i] = connect(ep->port);
    if (!conns[i]) throw redis_io_error("connect");
    const reply r = command(conns[i].get(), words);
    if (!r) {
      conns[i].reset();
      throw redis_io_error("io");
    }
    if (r->type == REDIS_REPLY_ERROR) throw redis_error(std::string(r->str, r->len));
    return r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
  }
};

}  // namespace

int main() {
  ::alarm(120);  // a last resort: the servers die with us (PR_SET_PDEATHSIG)
  const std::string binary = find_redis_server();
  if (binary.empty()) {
    std::printf(
        "SKIP: no redis-server on PATH (apt-get install redis-server); "
        "the Redis failover test did not run\n");
    return 77;
  }
  temp_dir dir;
  redis_process a(binary, free_port(), dir.path, "a");
  redis_process b(binary, free_port(), dir.path, "b");
  connection admin_a = admin(a.port());
  connection admin_b = admin(b.port());
  if (!admin_a || !admin_b) {
    std::fprintf(stderr, "redis-server did not answer PING within 5 s (logs in %s)\n",
                 dir.path.c_str());
    return 1;
  }

  // replica_port replicates primary_port, and is in sync (bounded).
  const auto replicate = [](redisContext* replica, redisContext* primary, int primary_port) {
    if (!ok_reply(command(replica, {"REPLICAOF", "127.0.0.1", std::to_string(primary_port)})))
      return false;
    return poll_until([&] { return info_field(replica, "master_link_status") == "up"; }, 10s) &&
           poll_until(
               [&] {
                 const reply w = command(primary, {"WAIT", "1", "100"});
                 return w && w->type == REDIS_REPLY_INTEGER && w->integer >= 1;
               },
               5s);
  };
  if (!replicate(admin_b.get(), admin_a.get(), a.port())) {
    std::fprintf(stderr, "B did not become A's replica in time\n");
    return 1;
  }

  client c;
  c.endpoints = {{"A", a.port()}, {"B", b.port()}};
  c.conns.resize(2);
  using log_type = keel::testing::recording_listener<keel::leader_changed, keel::redirected>;
  log_type log;
  auto lf = keel::leader_follower<redis_endpoint>(c.endpoints, {.max_redirects = 4})
                .with_signal(readonly_signal{})
                .failover_on(keel::on::exception<redis_io_error>())
                .with_listener(log);
  const auto idempotent = keel::pipeline(std::ref(lf));
  const auto at_most_once = keel::pipeline(lf.at_most_once());

  std::vector<int> acked_keys;
  long long acked_incrs = 0;
  long long unsure_incrs = 0;  // failed INCRs that may have been applied
  std::size_t longest_call = 0;
  int next_key = 0;
  const auto write_some = [&](int n) {
    for (int k = 0; k < n; ++k) {
      const int key = next_key++;
      c.reached.clear();
      const auto set = idempotent.try_execute([&](const keel::context& ctx) {
        return c.run(ctx, {"SET", "k_" + std::to_string(key), std::to_string(key)});
      });
      longest_call = std::max(longest_call, c.reached.size());
      if (set.has_value()) acked_keys.push_back(key);
      c.reached.clear();
      const auto count_one = [&](const keel::context& ctx) {
        return c.run(ctx, {"INCR", "counter"});
      };
      const auto incr = at_most_once.try_execute(count_one);
      longest_call = std::max(longest_call, c.reached.size());
      if (incr.has_value()) {
        ++acked_incrs;
      } else {
        ++unsure_incrs;
      }
    }
  };

  write_some(50);
  EXPECT(lf.leader() == 0);
  EXPECT(log.count<keel::leader_changed>() == 0);

  // A controlled switchover, as a Sentinel does it: the replica in sync
  // (WAIT), promoted (REPLICAOF NO ONE), the old primary demoted to its
  // replica. No write runs between the WAIT and the demotion.
  const auto switch_over = [&](redisContext* old_primary, redisContext* new_primary, int new_port) {
    const reply w = command(old_primary, {"WAIT", "1", "2000"});
    if (!w || w->type != REDIS_REPLY_INTEGER || w->integer < 1) return false;
    // WAIT counts a replica's acknowledgement, not its dataset: also wait
    // until the replica has no sync under way and holds what the primary holds.
    const auto dbsize = [](redisContext* conn) {
      const reply r = command(conn, {"DBSIZE"});
      return r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    };
    if (!poll_until(
            [&] {
              return info_field(new_primary, "master_sync_in_progress") == "0" &&
                     info_field(new_primary, "master_link_status") == "up" &&
                     dbsize(new_primary) == dbsize(old_primary);
            },
            5s))
      return false;
    if (!ok_reply(command(new_primary, {"REPLICAOF", "NO", "ONE"}))) return false;
    return replicate(old_primary, new_primary, new_port);
  };
  if (!switch_over(admin_a.get(), admin_b.get(), b.port())) {
    std::fprintf(stderr, "the first switch (B primary) did not complete in time\n");
    return 1;
  }
  write_some(50);
  EXPECT(lf.leader() == 1);
  EXPECT(log.count<keel::leader_changed>() == 1);

  if (!switch_over(admin_b.get(), admin_a.get(), a.port())) {
    std::fprintf(stderr, "the second switch (A primary again) did not complete in time\n");
    return 1;
  }
  write_some(50);
  EXPECT(lf.leader() == 0);

  // leader_changed once per switch, each found by a probe after READONLY.
  const auto changes = log.all<keel::leader_changed>();
  EXPECT(changes.size() == 2);
  if (changes.size() == 2) {
    EXPECT(changes[0].from == 0 && changes[0].to == 1);
    EXPECT(changes[1].from == 1 && changes[1].to == 0);
    EXPECT(changes[0].cause == keel::leader_change_cause::probe);
  }
  for (const auto& r : log.all<keel::redirected>()) {
    EXPECT(r.kind == keel::leader_signal_kind::not_leader);
  }
  // Within one redirect: the old primary's READONLY, then the new one.
  EXPECT(longest_call <= 2);
  EXPECT(log.count<keel::redirected>() == 2);

  // No lost acknowledged write, read on the final primary (A).
  EXPECT(acked_keys.size() == 150);
  for (const int key : acked_keys) {
    const reply r = command(admin_a.get(), {"GET", "k_" + std::to_string(key)});
    const bool present =
        r && r->type == REDIS_REPLY_STRING && std::string(r->str, r->len) == std::to_string(key);
    if (!present) std::fprintf(stderr, "lost acknowledged write: k_%d\n", key);
    EXPECT(present);
  }
  const reply counter = command(admin_a.get(), {"GET", "counter"});
  const long long count =
      counter && counter->type == REDIS_REPLY_STRING ? std::stoll(std::string(counter->str)) : -1;
  EXPECT(count >= acked_incrs && count <= acked_incrs + unsure_incrs);
  EXPECT(unsure_incrs == 0);  // READONLY proves an INCR was not applied: none is in doubt

  std::printf(
      "redis failover: %zu acknowledged SETs, %lld INCRs (counter %lld), "
      "%zu leader changes, %zu redirects, longest call %zu members\n",
      acked_keys.size(), acked_incrs, count, changes.size(), log.count<keel::redirected>(),
      longest_call);
  if (failures != 0) {
    std::fprintf(stderr, "%d check(s) failed; server logs in %s (removed at exit)\n", failures,
                 dir.path.c_str());
    return 1;
  }
  return 0;
}
