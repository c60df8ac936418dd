// Structural check of a volume's state (an fsck): the relations apply() keeps
// between records, checked from the records alone. Replay (Store::
// VerifyVolume) proves the state follows from the journal; this proves the
// state makes sense, so that a bug in apply, which replay reproduces
// faithfully, still shows. Pure: reads a StateReader, no I/O of its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "journal/format.h"
#include "journal/state.h"

namespace aspfs {

struct StateCheck {
  // What the state holds.
  uint64_t inodes = 0;
  uint64_t entries = 0;  // directory entries, "." and ".." not counted
  uint64_t extents = 0;
  uint64_t xattrs = 0;
  uint64_t orphans = 0;  // inodes at nlink 0 kept while open
  std::vector<ChunkId> chunks;  // every chunk the state references, once each, sorted
  uint64_t txid = 0;            // the position checked (Store::VerifyVolume sets it)

  // Every broken relation counts; the first kMaxListed are described.
  static constexpr size_t kMaxListed = 20;
  uint64_t problem_count = 0;
  std::vector<std::string> problems;

  bool ok() const { return problem_count == 0; }
  // "N problems: <first>; <second>; ... (and M more)", one line.
  std::string Summary() const;
};

// Reads every state key of vol and checks, among others: each entry names an
// existing inode of its type, under a valid name and its cookie; link counts
// equal the names (files) or 2 + subdirectories (directories); each directory
// has one name, its parent record agrees and its chain reaches the root;
// orphan records exactly for unlinked inodes; extents only of regular files,
// within their size; charged bytes equal what inline data and extents
// charge, and usage equals their sum and the inode count.
Result<StateCheck> CheckVolumeState(VolumeId vol, const StateReader& state);

}  // namespace aspfs
