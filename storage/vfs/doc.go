// Package vfs is the small file-system surface the storage package needs,
// with two implementations: OS, the real one, and FaultFS, an in-memory one
// that models what a crash keeps and can inject faults.
//
// Durability contract (both implementations, and every caller must follow it):
//   - File data and size are durable only after File.Sync returns (fdatasync
//     semantics: metadata not needed to read the data back is not flushed).
//   - A Create, Rename or Remove is durable only after SyncDir of the
//     directory that holds the name (both directories for a Rename across
//     them). Neither implementation syncs a directory on its own.
//   - An error from Sync means nothing about what reached the disk: callers
//     must treat it as fatal (the page cache may have dropped the data).
//
// FaultFS is deterministic: no goroutines, no clock, randomness only from the
// seed given to NewFaultFS. Both implementations are safe for concurrent use;
// a File may be read (ReadAt) by several goroutines while one writes it.
package vfs
