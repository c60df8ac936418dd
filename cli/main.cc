// aspfs: the command line. Talks to the node's aspfsd over its local control
// socket (daemon/control.capnp); see ../shared/CLI.md for the contract.
#include <capnp/ez-rpc.h>
#include <kj/exception.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/units.h"
#include "daemon/control.capnp.h"

namespace aspfs {
namespace {

using nlohmann::json;

constexpr const char* kDefaultSocket = "/run/aspfs/aspfsd.sock";

struct CliError {
  std::string message;
};

std::string HumanTime(int64_t ns) {
  char buf[64];
  time_t secs = ns / 1000000000;
  struct tm tm;
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", gmtime_r(&secs, &tm));
  char out[80];
  snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>((ns / 1000000) % 1000));
  return out;
}

std::string Hex(uint64_t v) {
  char buf[20];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

json InfoJson(rpc::VolumeInfo::Reader v) {
  json j = {{"name", v.getName().cStr()},
            {"id", v.getId()},
            {"position", {{"epoch", v.getEpoch()}, {"txid", v.getTxid()}, {"checksum", Hex(v.getChecksum())}}},
            {"used_bytes", v.getUsedBytes()},
            {"used_inodes", v.getUsedInodes()},
            {"quota_bytes", v.getQuotaBytes()},
            {"quota_inodes", v.getQuotaInodes()},
            {"created", HumanTime(v.getCreatedNs())},
            {"mounted", v.getMountpoint().size() > 0}};
  if (v.getMountpoint().size() > 0) {
    j["mountpoint"] = v.getMountpoint().cStr();
    j["read_only"] = v.getReadOnly();
    j["fuse_transport"] = v.getFuseTransport().cStr();
  }
  return j;
}

void PrintInfo(rpc::VolumeInfo::Reader v) {
  auto limit = [](uint64_t q, bool bytes) { return q ? (bytes ? FormatSize(q) : std::to_string(q)) : "unlimited"; };
  printf("name:        %s\n", v.getName().cStr());
  printf("id:          %llu\n", static_cast<unsigned long long>(v.getId()));
  printf("position:    epoch %llu, txid %llu, checksum %s\n", static_cast<unsigned long long>(v.getEpoch()),
         static_cast<unsigned long long>(v.getTxid()), Hex(v.getChecksum()).c_str());
  printf("used:        %s of %s, %llu of %s inodes\n", FormatSize(v.getUsedBytes()).c_str(),
         limit(v.getQuotaBytes(), true).c_str(), static_cast<unsigned long long>(v.getUsedInodes()),
         limit(v.getQuotaInodes(), false).c_str());
  printf("created:     %s\n", HumanTime(v.getCreatedNs()).c_str());
  if (v.getMountpoint().size() > 0) {
    printf("mounted:     %s%s, through %s\n", v.getMountpoint().cStr(), v.getReadOnly() ? " (read-only)" : "",
           v.getFuseTransport().cStr());
  } else {
    printf("mounted:     no\n");
  }
}

void PrintTable(capnp::List<rpc::VolumeInfo>::Reader vols) {
  printf("%-24s %6s %10s %10s %10s %10s  %s\n", "NAME", "ID", "TXID", "USED", "QUOTA", "INODES", "MOUNTED");
  for (auto v : vols) {
    printf("%-24s %6llu %10llu %10s %10s %10llu  %s\n", v.getName().cStr(), static_cast<unsigned long long>(v.getId()),
           static_cast<unsigned long long>(v.getTxid()), FormatSize(v.getUsedBytes()).c_str(),
           v.getQuotaBytes() ? FormatSize(v.getQuotaBytes()).c_str() : "-",
           static_cast<unsigned long long>(v.getUsedInodes()),
           v.getMountpoint().size() ? v.getMountpoint().cStr() : "-");
  }
}

void Check(capnp::Text::Reader error) {
  if (error.size() > 0) throw CliError{error.cStr()};
}

int Run(int argc, char** argv) {
  CLI::App app{
      "aspfs - manage ASPFS volumes and mounts on this node.\n\n"
      "Talks to the node's aspfsd over its control socket ($ASPFS_SOCKET, default /run/aspfs/aspfsd.sock).\n"
      "Exit status 0 on success; on failure one line 'aspfs: <what went wrong>' on stderr and status 1\n"
      "(2 for a usage error). --json prints one JSON document on stdout. Sizes accept K, M, G, T.",
      "aspfs"};
  app.require_subcommand(1);
  std::string socket_path = getenv("ASPFS_SOCKET") ? getenv("ASPFS_SOCKET") : kDefaultSocket;
  bool as_json = false;
  app.add_option("--socket", socket_path, "Control socket of aspfsd (overrides $ASPFS_SOCKET)");
  app.add_flag("--json", as_json, "Print one JSON document on stdout");
  auto add_json = [&](CLI::App* cmd) { cmd->add_flag("--json", as_json, "Print one JSON document on stdout"); };

  std::function<void(rpc::Control::Client&, kj::WaitScope&)> action;
  std::string name, dir, quota_bytes_text, snapshot;
  uint64_t quota_inodes = 0, from = 1, limit = 100;
  bool read_only = false;

  auto* volume = app.add_subcommand("volume", "Create, list, inspect, verify and delete volumes");
  volume->require_subcommand(1);
  add_json(volume);

  auto* create = volume->add_subcommand("create", "Create an empty volume (its root is owned by root, mode 0755)");
  create->add_option("NAME", name, "Volume name: letters, digits, '-', '_', '.'; at most 64")->required();
  create->add_option("--quota-bytes", quota_bytes_text, "Byte quota, e.g. 10G (default: unlimited)");
  create->add_option("--quota-inodes", quota_inodes, "Inode quota (default: unlimited)");
  std::string from_source, mode, max_lag;
  int replicas = 0;
  create->add_option("--from", from_source, "Clone from TEMPLATE_OR_VOLUME[@SNAPSHOT] (not available yet)");
  create->add_option("--replicas", replicas, "Number of replicas (not available yet: volumes are local)");
  create->add_option("--mode", mode, "Replication mode sync|async (not available yet)");
  create->add_option("--max-lag", max_lag, "Async replication lag bound (not available yet)");
  add_json(create);
  create->callback([&] {
    if (!from_source.empty()) throw CliError{"--from: templates and clones are not available in this version"};
    if (replicas > 0 || !mode.empty() || !max_lag.empty()) {
      throw CliError{"replication (--replicas, --mode, --max-lag) is not available in this version"};
    }
    uint64_t quota_bytes = 0;
    if (!quota_bytes_text.empty()) {
      auto parsed = ParseSize(quota_bytes_text);
      if (!parsed) throw CliError{"--quota-bytes: '" + quota_bytes_text + "' is not a size (e.g. 512M, 10G)"};
      quota_bytes = *parsed;
    }
    action = [&, quota_bytes](rpc::Control::Client& c, kj::WaitScope& ws) {
      auto req = c.createVolumeRequest();
      req.setName(name);
      req.setQuotaBytes(quota_bytes);
      req.setQuotaInodes(quota_inodes);
      auto res = req.send().wait(ws);
      Check(res.getError());
      if (as_json) {
        printf("%s\n", InfoJson(res.getInfo()).dump(2).c_str());
      } else {
        printf("created volume %s\n", name.c_str());
      }
    };
  });

  auto* list = volume->add_subcommand("list", "List the node's volumes");
  add_json(list);
  list->callback([&] {
    action = [&](rpc::Control::Client& c, kj::WaitScope& ws) {
      auto res = c.listVolumesRequest().send().wait(ws);
      Check(res.getError());
      if (as_json) {
        json j = json::array();
        for (auto v : res.getVolumes()) j.push_back(InfoJson(v));
        printf("%s\n", j.dump(2).c_str());
      } else {
        PrintTable(res.getVolumes());
      }
    };
  });

  auto* info = volume->add_subcommand("info", "Show a volume's position, usage, quota and mount");
  info->add_option("NAME", name, "Volume name")->required();
  add_json(info);
  info->callback([&] {
    action = [&](rpc::Control::Client& c, kj::WaitScope& ws) {
      auto req = c.volumeInfoRequest();
      req.setName(name);
      auto res = req.send().wait(ws);
      Check(res.getError());
      if (as_json) {
        printf("%s\n", InfoJson(res.getInfo()).dump(2).c_str());
      } else {
        PrintInfo(res.getInfo());
      }
    };
  });

  auto* del = volume->add_subcommand("delete", "Delete an unmounted volume and its journal");
  del->add_option("NAME", name, "Volume name")->required();
  add_json(del);
  del->callback([&] {
    action = [&](rpc::Control::Client& c, kj::WaitScope& ws) {
      auto req = c.deleteVolumeRequest();
      req.setName(name);
      Check(req.send().wait(ws).getError());
      if (as_json) {
        printf("%s\n", json{{"deleted", name}}.dump(2).c_str());
      } else {
        printf("deleted volume %s\n", name.c_str());
      }
    };
  });

  auto* verify = volume->add_subcommand(
      "verify",
      "Replay the volume's journal from its first txn and compare the result, key by key, with its state; check "
      "the state's structure (link counts, entries, parents, orphans, block charges, usage) and read every chunk "
      "it references against its hash");
  verify->add_option("NAME", name, "Volume name")->required();
  add_json(verify);
  verify->callback([&] {
    action = [&](rpc::Control::Client& c, kj::WaitScope& ws) {
      auto req = c.verifyVolumeRequest();
      req.setName(name);
      auto res = req.send().wait(ws);
      Check(res.getError());
      auto counts = res.getCheck();
      if (as_json) {
        printf("%s\n", json{{"volume", name},
                            {"consistent", true},
                            {"txid", counts.getTxid()},
                            {"inodes", counts.getInodes()},
                            {"entries", counts.getEntries()},
                            {"extents", counts.getExtents()},
                            {"xattrs", counts.getXattrs()},
                            {"orphans", counts.getOrphans()},
                            {"chunks", counts.getChunks()}}
                            .dump(2)
                            .c_str());
      } else {
        printf("volume %s: state equals its journal replayed to txid %llu; structure consistent (%llu inodes, %llu "
               "entries, %llu extents, %llu xattrs, %llu orphans); %llu chunks read and match their hashes\n",
               name.c_str(), static_cast<unsigned long long>(counts.getTxid()),
               static_cast<unsigned long long>(counts.getInodes()), static_cast<unsigned long long>(counts.getEntries()),
               static_cast<unsigned long long>(counts.getExtents()), static_cast<unsigned long long>(counts.getXattrs()),
               static_cast<unsigned long long>(counts.getOrphans()), static_cast<unsigned long long>(counts.getChunks()));
      }
    };
  });

  auto* mount = app.add_subcommand("mount", "Mount a volume at DIR; returns once the mount is live");
  mount->add_option("NAME", name, "Volume name")->required();
  mount->add_option("DIR", dir, "Existing directory to mount on")->required();
  mount->add_flag("--ro", read_only, "Mount read-only");
  mount->add_option("--at", snapshot, "Mount a snapshot (not available yet)");
  add_json(mount);
  mount->callback([&] {
    if (!snapshot.empty()) throw CliError{"snapshots are not available in this version"};
    action = [&](rpc::Control::Client& c, kj::WaitScope& ws) {
      char resolved[PATH_MAX];
      std::string path = realpath(dir.c_str(), resolved) ? resolved : std::filesystem::absolute(dir).string();
      auto req = c.mountRequest();
      req.setName(name);
      req.setDir(path);
      req.setReadOnly(read_only);
      auto res = req.send().wait(ws);
      Check(res.getError());
      if (as_json) {
        printf("%s\n", InfoJson(res.getInfo()).dump(2).c_str());
      } else {
        printf("mounted %s at %s%s\n", name.c_str(), path.c_str(), read_only ? " (read-only)" : "");
      }
    };
  });

  auto* umount = app.add_subcommand("umount", "Unmount DIR; returns once it is gone and its data committed");
  umount->add_option("DIR", dir, "Mount point")->required();
  add_json(umount);
  umount->callback([&] {
    action = [&](rpc::Control::Client& c, kj::WaitScope& ws) {
      char resolved[PATH_MAX];
      std::string path = dir;
      if (dir.empty() || dir[0] != '/') {
        path = realpath(dir.c_str(), resolved) ? resolved : std::filesystem::absolute(dir).string();
      }
      auto req = c.umountRequest();
      req.setDir(path);
      Check(req.send().wait(ws).getError());
      if (as_json) {
        printf("%s\n", json{{"unmounted", path}}.dump(2).c_str());
      } else {
        printf("unmounted %s\n", path.c_str());
      }
    };
  });

  auto* journal = app.add_subcommand("journal", "Inspect a volume's journal");
  journal->require_subcommand(1);
  add_json(journal);
  auto* dump = journal->add_subcommand("dump", "Print a volume's txns, one per line per op");
  dump->add_option("NAME", name, "Volume name")->required();
  dump->add_option("--from", from, "First txid to show")->capture_default_str();
  dump->add_option("--limit", limit, "At most this many txns")->capture_default_str();
  add_json(dump);
  dump->callback([&] {
    action = [&](rpc::Control::Client& c, kj::WaitScope& ws) {
      auto req = c.journalDumpRequest();
      req.setName(name);
      req.setFrom(from);
      req.setLimit(limit);
      auto res = req.send().wait(ws);
      Check(res.getError());
      if (as_json) {
        json j = json::array();
        for (auto e : res.getEntries()) {
          json ops = json::array();
          for (auto op : e.getOps()) ops.push_back(op.cStr());
          j.push_back({{"txid", e.getTxid()},
                       {"epoch", e.getEpoch()},
                       {"time", HumanTime(e.getTimeNs())},
                       {"checksum", Hex(e.getChecksum())},
                       {"ops", ops}});
        }
        printf("%s\n", j.dump(2).c_str());
        return;
      }
      for (auto e : res.getEntries()) {
        printf("txn %llu  epoch %llu  %s  checksum %s\n", static_cast<unsigned long long>(e.getTxid()),
               static_cast<unsigned long long>(e.getEpoch()), HumanTime(e.getTimeNs()).c_str(),
               Hex(e.getChecksum()).c_str());
        for (auto op : e.getOps()) printf("    %s\n", op.cStr());
      }
    };
  });

  auto* status = app.add_subcommand("status", "Show the node, its volumes, positions and mounts");
  add_json(status);
  status->callback([&] {
    action = [&](rpc::Control::Client& c, kj::WaitScope& ws) {
      auto res = c.statusRequest().send().wait(ws);
      Check(res.getError());
      auto s = res.getStatus();
      if (as_json) {
        json vols = json::array();
        for (auto v : s.getVolumes()) vols.push_back(InfoJson(v));
        json j = {{"node", s.getNode().cStr()},
                  {"store", s.getStore().cStr()},
                  {"pid", s.getPid()},
                  {"uptime_seconds", s.getUptimeSeconds()},
                  {"rss_bytes", s.getRssBytes()},
                  {"version", s.getVersion().cStr()},
                  {"replication", "none (single node)"},
                  {"disk_total_bytes", s.getDiskTotalBytes()},
                  {"disk_free_bytes", s.getDiskFreeBytes()},
                  {"disk_reserve_bytes", s.getDiskReserveBytes()},
                  {"disk_full", s.getDiskFull()},
                  {"volumes", vols}};
        printf("%s\n", j.dump(2).c_str());
        return;
      }
      size_t mounted = 0;
      for (auto v : s.getVolumes()) mounted += v.getMountpoint().size() > 0;
      printf("node %s (aspfsd %s, pid %u, up %llus, rss %s)\n", s.getNode().cStr(), s.getVersion().cStr(), s.getPid(),
             static_cast<unsigned long long>(s.getUptimeSeconds()), FormatSize(s.getRssBytes()).c_str());
      printf("store %s: %u volume(s), %zu mounted; replication: none (single node)\n", s.getStore().cStr(),
             s.getVolumes().size(), mounted);
      if (s.getDiskTotalBytes()) {
        printf("disk: %s free of %s, %s kept in reserve%s\n", FormatSize(s.getDiskFreeBytes()).c_str(),
               FormatSize(s.getDiskTotalBytes()).c_str(), FormatSize(s.getDiskReserveBytes()).c_str(),
               s.getDiskFull() ? "; FULL: file data is refused (ENOSPC) until space is freed" : "");
      }
      PrintTable(s.getVolumes());
    };
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    fprintf(stderr, "aspfs: %s (see --help)\n", e.what());
    return 2;
  } catch (const CliError& e) {
    fprintf(stderr, "aspfs: %s\n", e.message.c_str());
    return 2;
  }
  if (!action) return 2;
  std::optional<std::string> refused;  // the daemon's own error, not a transport failure
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
                capnp::EzRpcClient client("unix:" + socket_path);
                auto control = client.getMain<rpc::Control>();
                try {
                  action(control, client.getWaitScope());
                } catch (const CliError& error) {
                  refused = error.message;
                }
              })) {
      std::string what = e->getDescription().cStr();
      if (what.find("connect") != std::string::npos || what.find("No such file") != std::string::npos) {
        fprintf(stderr, "aspfs: cannot reach aspfsd at %s (is it running?)\n", socket_path.c_str());
      } else {
        fprintf(stderr, "aspfs: lost the connection to aspfsd: %s\n", what.c_str());
      }
    return 1;
  }
  if (refused) {
    fprintf(stderr, "aspfs: %s\n", refused->c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace aspfs

int main(int argc, char** argv) { return aspfs::Run(argc, argv); }
