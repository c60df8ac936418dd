#include "journal/status.h"

namespace aspfs {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kNotFound: return "not found";
    case Code::kExists: return "already exists";
    case Code::kNotDir: return "not a directory";
    case Code::kIsDir: return "is a directory";
    case Code::kNotEmpty: return "directory not empty";
    case Code::kNameTooLong: return "name too long";
    case Code::kInvalid: return "invalid argument";
    case Code::kQuota: return "quota exceeded";
    case Code::kNoSpace: return "no space left";
    case Code::kCorrupt: return "corrupt data";
    case Code::kIo: return "I/O error";
    case Code::kBusy: return "busy";
    case Code::kPermission: return "operation not permitted";
    case Code::kTooManyLinks: return "too many links";
    case Code::kNoData: return "no such attribute";
    case Code::kRange: return "out of range";
    case Code::kTooBig: return "file too large";
    case Code::kValueTooBig: return "value too large";
    case Code::kNotSupported: return "not supported";
    case Code::kLoop: return "too many levels of symbolic links";
    case Code::kNoSuchOffset: return "no such offset";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  if (message_.empty()) return CodeName(code_);
  return message_;
}

Status Status::Context(const std::string& what) const {
  if (ok()) return *this;
  return Status(code_, what + ": " + ToString());
}

}  // namespace aspfs
