// aspfsd: the node daemon. One store, every FUSE mount of the node, the
// local control socket (Cap'n Proto RPC on the main thread's kj event loop).
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "daemon/control_server.h"
#include "aspfs/log.h"

namespace aspfs {
namespace {

constexpr const char* kDefaultSocket = "/run/aspfs/aspfsd.sock";

// True when a daemon answers on path.
bool SocketAnswers(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// What aspfsd's log says at start about FUSE over io_uring.
std::string FuseIoUringState(bool wanted) {
  if (!wanted) return "off (--fuse-io-uring off)";
  char value = 'N';
  FILE* f = fopen("/sys/module/fuse/parameters/enable_uring", "re");
  if (!f) return "not in this kernel (Linux 6.14+ with CONFIG_FUSE_IO_URING); serving through /dev/fuse";
  value = static_cast<char>(fgetc(f));
  fclose(f);
  if (value != 'Y') return "off in the kernel (echo Y >/sys/module/fuse/parameters/enable_uring); serving through /dev/fuse";
  return "on";
}

int Run(int argc, char** argv) {
  CLI::App app{
      "aspfsd - the ASPFS node daemon.\n\n"
      "Holds the node's store (one RocksDB instance with every volume's journal, state and chunks), serves\n"
      "every FUSE mount of the node and answers the `aspfs` CLI on a local control socket. Runs in the\n"
      "foreground; SIGTERM (or SIGINT) unmounts every volume cleanly, syncs the store and exits 0.",
      "aspfsd"};
  std::string store_dir, listen, node, socket_path = kDefaultSocket, join, metrics;
  bool control_center = false;
  std::string fuse_io_uring = "auto";
  app.add_option("--store", store_dir, "Directory of the node's store (created if missing)")->required();
  app.add_option("--listen", listen, "HOST:PORT for peers (replication, control center; reserved, not served yet)");
  app.add_option("--node", node, "This node's name (default: the host name)");
  app.add_option("--socket", socket_path, "Local control socket for the CLI")->capture_default_str();
  app.add_flag("--control-center", control_center, "Run the embedded control center (the single-node default)");
  app.add_option("--join", join, "HOST:PORT of a control center to join (not available yet)");
  app.add_option("--metrics", metrics, "HOST:PORT for the metrics endpoint (not available yet)");
  app.add_option("--fuse-io-uring", fuse_io_uring,
                 "auto: serve mounts through FUSE over io_uring where the kernel offers it (Linux 6.14+ with\n"
                 "the fuse module's enable_uring parameter on: echo Y >/sys/module/fuse/parameters/enable_uring;\n"
                 "about twice the metadata operations per second); off: through /dev/fuse only")
      ->check(CLI::IsMember({"auto", "off"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    fprintf(stderr, "aspfsd: %s\n", e.what());
    return 2;
  }
  if (!join.empty() || !metrics.empty()) {
    fprintf(stderr, "aspfsd: --join and --metrics are not available in this version\n");
    return 2;
  }
  if (!listen.empty() && listen.rfind(':') == std::string::npos) {
    fprintf(stderr, "aspfsd: --listen wants HOST:PORT, got '%s'\n", listen.c_str());
    return 2;
  }
  if (node.empty()) {
    char host[256] = "node";
    gethostname(host, sizeof host - 1);
    node = host;
  }

  // Before any thread exists (RocksDB starts some): threads inherit the
  // blocked mask, so the signals reach only the event loop.
  signal(SIGPIPE, SIG_IGN);
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);

  std::error_code ec;
  std::filesystem::create_directories(store_dir, ec);
  if (ec) {
    fprintf(stderr, "aspfsd: cannot create store directory %s: %s\n", store_dir.c_str(), ec.message().c_str());
    return 1;
  }
  if (pid_t holder = Store::LockHolder(store_dir)) {
    Log("store %s is held by process %d; waiting up to 10 s for it to let go", store_dir.c_str(), holder);
  }
  auto store = Store::Open(store_dir);
  if (!store.ok()) {
    fprintf(stderr, "aspfsd: %s\n", store.status().ToString().c_str());
    return 1;
  }
  (*store)->space_guard().SetOnChange([](bool, const std::string& why) { Log("%s", why.c_str()); });

  std::filesystem::create_directories(std::filesystem::path(socket_path).parent_path(), ec);
  if (SocketAnswers(socket_path)) {
    fprintf(stderr, "aspfsd: another aspfsd already serves %s\n", socket_path.c_str());
    return 1;
  }
  unlink(socket_path.c_str());

  auto io = kj::setupAsyncIo();
  MountTable mounts(store->get(), fuse_io_uring == "auto");
  Log("FUSE over io_uring: %s", FuseIoUringState(fuse_io_uring == "auto").c_str());
  capnp::TwoPartyServer server(
      kj::heap<ControlImpl>(store->get(), &mounts, NodeIdentity{node, store_dir, std::chrono::steady_clock::now()}));
  kj::Own<kj::ConnectionReceiver> listener;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                auto addr = io.provider->getNetwork().parseAddress("unix:" + socket_path).wait(io.waitScope);
                listener = addr->listen();
              })) {
    fprintf(stderr, "aspfsd: cannot listen on %s: %s\n", socket_path.c_str(), e->getDescription().cStr());
    return 1;
  }
  chmod(socket_path.c_str(), 0660);
  auto serving = server.listen(*listener).eagerlyEvaluate([](kj::Exception&& e) {
    Log("control socket stopped: %s", e.getDescription().cStr());
  });
  Log("node %s serving store %s on %s", node.c_str(), store_dir.c_str(), socket_path.c_str());

  auto stop = io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT));
  siginfo_t info = stop.wait(io.waitScope);
  Log("signal %d: unmounting %zu volume(s)", info.si_signo, mounts.List().size());
  mounts.UnmountAll();
  Status synced = (*store)->Sync();
  unlink(socket_path.c_str());
  if (!synced.ok()) {
    Log("final sync failed: %s", synced.ToString().c_str());
    return 1;
  }
  Log("stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace aspfs

int main(int argc, char** argv) { return aspfs::Run(argc, argv); }
