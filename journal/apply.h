// apply(): the one function that changes a volume's state, run alike by the
// primary and (later) by replicas. Pure: it reads and writes only through the
// StateDelta, so it is tested without RocksDB, FUSE or threads.
#pragma once

#include "journal/format.h"
#include "journal/state.h"
#include "journal/txn.h"

namespace aspfs {

// Applies every op of txn to vol's state in delta, and sets nothing else (the
// caller stores the position and journal entry). On error the delta is
// partly written and must be discarded: a txn applies whole or not at all.
Status Apply(VolumeId vol, const Txn& txn, StateDelta* delta);

}  // namespace aspfs
