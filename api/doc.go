// Package api holds the wire types of raftkv's HTTP API (docs/api.md): the JSON
// bodies, the error codes with their HTTP statuses, and the header names.
// The server and the Go client both use it, so the two cannot drift apart.
//
// # Invariants
//
//   - Every error answer is an ErrorBody {"error","code"} whose code is one
//     of the Code constants and whose HTTP status is Status(code).
//   - Whether a write answered with a code may still take effect is fixed by
//     the code (MayHaveApplied): unknown_outcome and internal say "maybe",
//     every other code "no".
//
// The package holds no state; everything in it is safe for concurrent use.
package api
