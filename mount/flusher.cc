#include "mount/flusher.h"

namespace aspfs {

GroupCommitFlusher::GroupCommitFlusher(std::chrono::milliseconds interval, std::function<void()> flush)
    : interval_(interval), flush_(std::move(flush)), timer_(io_) {
  Arm();
  thread_ = std::thread([this] { io_.run(); });
}

GroupCommitFlusher::~GroupCommitFlusher() {
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

void GroupCommitFlusher::Arm() {
  timer_.expires_after(interval_);
  timer_.async_wait([this](const asio::error_code& error) {
    if (error) return;
    flush_();
    Arm();
  });
}

}  // namespace aspfs
