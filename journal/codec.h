// Journal entry encoding: Txn <-> Cap'n Proto bytes (journal/txn.capnp).
#pragma once

#include <string>
#include <string_view>

#include "journal/status.h"
#include "journal/txn.h"

namespace aspfs {

std::string EncodeTxn(const Txn& txn);
// Checks the bytes before use: a malformed entry is kCorrupt, never a crash.
Result<Txn> DecodeTxn(std::string_view bytes);

}  // namespace aspfs
