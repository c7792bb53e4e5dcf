// Package docs holds raftkv's documentation — the guide from the Raft paper
// to the code (guide.md), the hands-on lab (lab.md, and the program in
// lab/ that runs it and takes its screenshots), the HTTP API (api.md) and
// the operator's guide (operations.md), each with a Chinese edition
// (*.zh-CN.md), and the golden protocol transcripts the guide links to
// (transcripts/) — and the tests that keep them true:
//
//   - every relative link in these documents and the READMEs resolves to a file
//     or directory of the repository, and every anchor to a heading (a
//     README never committed is a draft: its broken links are only logged);
//   - a link whose text is a Go identifier in backquotes, such as
//     [`handleAppendEntries`](../raft/follower.go), names something
//     declared in the linked file (a function, method, type, constant or
//     variable), so a rename cannot leave the guide pointing at nothing;
//   - each guide carries the section anchors the live view (/ui) links to,
//     and links every transcript;
//   - each Chinese edition links the same targets as its English original,
//     and in git history the last commit that touched an English file also
//     touched its Chinese edition, or came before the last one that did.
//   - api.md and operations.md, their Chinese editions, the READMEs, the
//     guides and the lab name only the flags, endpoints, error codes and
//     metrics the code defines, and the English api.md and operations.md
//     document every flag, endpoint and error code the code defines, and
//     operations.md every metric (reference_test.go).
//
// The transcripts themselves are regenerated and compared by
// TestTranscripts in package raft. The package has no code to import; it
// exists for its tests, which read files and run git, and share nothing.
package docs
