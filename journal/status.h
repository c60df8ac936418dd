// Status and Result<T>: how the core reports failure. The core never sees
// errno; aspfs/ maps Code to errno in one place (ToErrno).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace aspfs {

enum class Code {
  kOk = 0,
  kNotFound,       // no such file, volume, entry, xattr
  kExists,
  kNotDir,
  kIsDir,
  kNotEmpty,
  kNameTooLong,
  kInvalid,        // bad argument or name
  kQuota,          // volume quota exceeded
  kNoSpace,
  kCorrupt,        // stored data fails its hash or does not decode
  kIo,
  kBusy,
  kPermission,     // operation not permitted (EPERM)
  kTooManyLinks,
  kNoData,         // xattr absent
  kRange,          // buffer too small / xattr name too long
  kTooBig,         // file too large (EFBIG)
  kValueTooBig,    // attribute value too large (E2BIG)
  kNotSupported,
  kLoop,
  kNoSuchOffset,   // lseek past the last data or hole (ENXIO)
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;
  // Prefixes context: "journal: commit txn 42: <cause>".
  Status Context(const std::string& what) const;
  void IgnoreError() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}
  Result(Status status) : status_(std::move(status)) {}
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

inline Status Error(Code code, std::string message) { return Status(code, std::move(message)); }

#define ASPFS_RETURN_IF_ERROR(expr)        \
  do {                                     \
    ::aspfs::Status status_ = (expr);      \
    if (!status_.ok()) return status_;     \
  } while (0)

}  // namespace aspfs
