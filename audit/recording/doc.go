// Package recording writes session recordings as asciicast v2 files
// (https://docs.asciinema.org/manual/asciicast/v2/), playable with
// `asciinema play`, and ships finished ones to S3.
//
// # Files
//
// A [Recorder] for name writes DIR/NAME.part (mode 0600, DIR created 0750
// if missing) and, when closed, fsyncs it and renames it to DIR/NAME. Names
// end in [Ext] (".cast"), or [EncryptedExt] (".cast.age") when encrypted,
// so a finished recording is exactly a regular file in DIR whose name ends
// in either; a file still being written ends in ".part" and is never
// uploaded. A ".part" file left behind by a crash
// stays where it is: it holds valid asciicast up to its last complete line
// (see below), and an operator who wants it shipped renames it.
//
// # Durability
//
// Events are appended to an in-memory buffer. The buffer is written to the
// file at most [DefaultFlushInterval] (1s) after the first event that made
// it non-empty, or at once when it reaches 32 KiB, and the file is fsynced
// within the same interval after any write, off the data path. A crash of
// the process thus loses at most about the last second of events (never
// more than 32 KiB and one event), a crash of the machine about the same
// plus an fsync in progress; what is on disk is valid asciicast up to its
// last complete line. Close flushes, fsyncs the file, renames it and
// fsyncs the folder. An encrypted recording reaches its file in whole
// 64 KiB chunks instead (see Encryption below).
//
// When a write fails (a full disk, an I/O error), the recorder cuts the file
// back to its last complete line, drops every later event, tells the
// failure func of [WithFailureFunc] (as it does when [WithMaxBytes] is
// reached) and reports the first error from Close. Whether the session goes
// on is the caller's decision: the proxy ends it unless audit.on_failure is
// continue. Close still renames the cut file, so that what was recorded is
// kept and shipped.
//
// # Encryption
//
// With [WithRecipients], a recording is encrypted with age
// (https://age-encryption.org/v1) to one or more X25519 recipients as it
// is written: the file, named NAME[EncryptedExt] (".cast.age"), holds the
// age header and then age's STREAM ciphertext, and no plaintext is ever
// written to disk, not even to a temporary file. `age -d -i IDENTITY FILE`
// (or `bastion audit decrypt`) gives back the asciicast.
//
// age encrypts 64 KiB of plaintext per chunk and cannot write a partial
// chunk without ending the file, so for an encrypted recording a flush
// moves the buffered events into the chunk in memory, and the file (and
// its fsync) only grows by whole chunks. A crash therefore loses the chunk
// in memory: up to 64 KiB of the session, however old (a quiet session can
// lose everything since its start), where a plain recording loses about a
// second. The file a crash leaves behind decrypts up to its last whole
// chunk, then age reports it truncated ("unexpected EOF"). A write error
// cuts the file back to its last whole chunk, as a plain recording is cut
// back to its last whole line.
//
// # Shipping
//
// An [Uploader] puts each finished recording to S3 under Prefix + base name,
// with Content-Type [ContentType], retrying with a growing, bounded backoff
// until it succeeds; only then is the local file deleted (or, with
// KeepLocal, moved into DIR/uploaded/). On start it scans DIR for finished
// recordings left by an earlier run, so a file is kept locally until its
// upload has succeeded, across restarts.
package recording
