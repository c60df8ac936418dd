# Journal entries: how a transaction is stored in the journal and (later)
# shipped to replicas. Layout and rules: docs/journal-format.md.
@0xd4020dbe3b9ad67c;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("aspfs::wire");

struct PagePatch {
  page @0 :UInt32;
  length @1 :UInt32;
  chunkHi @2 :UInt64;
  chunkLo @3 :UInt64;
}

struct BlockRef {
  index @0 :UInt64;
  chunkHi @1 :UInt64;
  chunkLo @2 :UInt64;
  length @3 :UInt32;
  pages @4 :List(PagePatch);  # non-empty: patch these pages, chunk and length unused
}

struct Op {
  union {
    initVolume :group {
      mode @0 :UInt32;
      uid @1 :UInt32;
      gid @2 :UInt32;
      quotaBytes @3 :UInt64;
      quotaInodes @4 :UInt64;
    }
    setQuota :group {
      bytes @5 :UInt64;
      inodes @6 :UInt64;
    }
    mknod :group {
      parent @7 :UInt64;
      name @8 :Data;
      ino @9 :UInt64;
      mode @10 :UInt32;
      uid @11 :UInt32;
      gid @12 :UInt32;
      rdev @13 :UInt64;
      symlinkTarget @14 :Data;
    }
    link :group {
      ino @15 :UInt64;
      newParent @16 :UInt64;
      newName @17 :Data;
    }
    unlink :group {
      parent @18 :UInt64;
      name @19 :Data;
      directory @20 :Bool;
    }
    rename :group {
      parent @21 :UInt64;
      name @22 :Data;
      newParent @23 :UInt64;
      newName @24 :Data;
      flags @25 :UInt32;
    }
    setAttr :group {
      ino @26 :UInt64;
      mask @27 :UInt32;
      mode @28 :UInt32;
      uid @29 :UInt32;
      gid @30 :UInt32;
      size @31 :UInt64;
      atimeNs @32 :Int64;
      mtimeNs @33 :Int64;
      ctimeNs @34 :Int64;
    }
    writeInline :group {
      ino @35 :UInt64;
      offset @36 :UInt64;
      data @37 :Data;
    }
    setBlocks :group {
      ino @38 :UInt64;
      size @39 :UInt64;
      blocks @40 :List(BlockRef);
      touchMtime @41 :Bool;
    }
    setXattr :group {
      ino @42 :UInt64;
      name @43 :Data;
      value @44 :Data;
      flags @45 :UInt32;
    }
    removeXattr :group {
      ino @46 :UInt64;
      name @47 :Data;
    }
    purge :group {
      ino @48 :UInt64;
    }
  }
}

struct Txn {
  epoch @0 :UInt64;
  txid @1 :UInt64;
  timeNs @2 :Int64;
  checksum @3 :UInt64;
  ops @4 :List(Op);
}
