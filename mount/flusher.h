// GroupCommitFlusher: the daemon's background schedule that commits buffered
// writes every interval, on its own Asio io_context thread (never a kj
// thread).
#pragma once

#include <asio.hpp>
#include <chrono>
#include <functional>
#include <thread>

namespace aspfs {

class GroupCommitFlusher {
 public:
  GroupCommitFlusher(std::chrono::milliseconds interval, std::function<void()> flush);
  ~GroupCommitFlusher();  // stops the thread; a flush under way completes

 private:
  void Arm();

  std::chrono::milliseconds interval_;
  std::function<void()> flush_;
  asio::io_context io_;
  asio::steady_timer timer_;
  std::thread thread_;
};

}  // namespace aspfs
