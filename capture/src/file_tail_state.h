// What a file tail saves per file, and how a file is recognised again (file tail internals).
//
// State key: "tail/<input>/<dev>:<ino>" (decimal). Value, text, one line:
//   "1 <dev> <ino> <fp_length> <fp_hash hex> <offset> <discarding 0|1> <path>"
// The path comes last and runs to the end of the value, so it may hold spaces. An empty value is
// a tombstone: the file was deleted and read to its end, and the inode may be reused.
//
// Fingerprint: FNV-1a (64 bit) of the file's first `length` bytes, where length is
// min(size, fingerprint_bytes) when it was taken. A file shorter than fingerprint_bytes has a
// provisional fingerprint: to check it, only its first `length` bytes are hashed again, and once
// they match it is retaken over the longer prefix. A file that grows therefore keeps matching,
// while a file whose first bytes changed (inode reused, rewritten in place after a truncation)
// does not.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cistern::capture::tail {

struct FileIdentity {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
  bool operator==(const FileIdentity&) const = default;
  bool operator<(const FileIdentity& o) const { return dev != o.dev ? dev < o.dev : ino < o.ino; }
};

struct Fingerprint {
  std::uint64_t length = 0;  // bytes hashed
  std::uint64_t hash = 0;
  bool operator==(const Fingerprint&) const = default;
};

struct SavedFile {
  FileIdentity id;
  Fingerprint fp;
  std::uint64_t offset = 0;  // next byte to read: after the last line handed to the sink
  bool discarding = false;   // `offset` is inside the skipped rest of a truncated line
  std::string path;          // where it was last seen (informational)
};

std::uint64_t fnv1a64(std::string_view data) noexcept;

// The fingerprint of a file whose first bytes are `prefix` (as many as the file has, up to at
// least fingerprint_bytes).
Fingerprint takeFingerprint(std::string_view prefix, std::uint64_t fingerprint_bytes);

// Whether the file whose first bytes are `prefix` (as many as the file has, up to at least
// max(fp.length, fingerprint_bytes)) is the one `fp` was taken of. Returns the fingerprint to keep
// (retaken over a longer prefix when the file grew), or nullopt when it is another file.
std::optional<Fingerprint> matchFingerprint(std::string_view prefix, const Fingerprint& fp,
                                            std::uint64_t fingerprint_bytes);

// "tail/<input>/".
std::string stateKeyPrefix(std::string_view input);
// "tail/<input>/<dev>:<ino>".
std::string stateKey(std::string_view input, const FileIdentity& id);
// The identity named by a key's part after the prefix ("<dev>:<ino>"), or nullopt when the key
// is not of that form (for example it belongs to an input whose name extends this one's).
std::optional<FileIdentity> parseStateKeySuffix(std::string_view suffix);

std::string encodeState(const SavedFile& file);
// nullopt when `value` is not a well-formed version 1 value (empty values are tombstones and
// also give nullopt; the caller tells them apart).
std::optional<SavedFile> decodeState(std::string_view value);

}  // namespace cistern::capture::tail
