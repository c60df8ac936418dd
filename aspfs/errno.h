// The one place where core Status codes become errno values.
#pragma once

#include "journal/status.h"

namespace aspfs {

int ToErrno(const Status& status);

}  // namespace aspfs
