#include "aspfs/errno.h"

#include <cerrno>

namespace aspfs {

int ToErrno(const Status& status) {
  switch (status.code()) {
    case Code::kOk: return 0;
    case Code::kNotFound: return ENOENT;
    case Code::kExists: return EEXIST;
    case Code::kNotDir: return ENOTDIR;
    case Code::kIsDir: return EISDIR;
    case Code::kNotEmpty: return ENOTEMPTY;
    case Code::kNameTooLong: return ENAMETOOLONG;
    case Code::kInvalid: return EINVAL;
    case Code::kQuota: return EDQUOT;
    case Code::kNoSpace: return ENOSPC;
    case Code::kCorrupt: return EIO;
    case Code::kIo: return EIO;
    case Code::kBusy: return EBUSY;
    case Code::kPermission: return EPERM;
    case Code::kTooManyLinks: return EMLINK;
    case Code::kNoData: return ENODATA;
    case Code::kRange: return ERANGE;
    case Code::kTooBig: return EFBIG;
    case Code::kValueTooBig: return E2BIG;
    case Code::kNotSupported: return EOPNOTSUPP;
    case Code::kLoop: return ELOOP;
    case Code::kNoSuchOffset: return ENXIO;
  }
  return EIO;
}

}  // namespace aspfs
