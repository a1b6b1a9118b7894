// Package auth holds rewind's access tokens and their scopes.
//
// A token is a random secret that a client sends as "Authorization: Bearer
// SECRET". The server keeps only the SHA-256 hash of each secret, in
// tokens.json in the data directory (mode 0600), and compares hashes in
// constant time. A secret is shown once, when the token is created.
//
// A token carries scopes, each an action on a pattern of stream names:
//
//	read:orders-*    read streams whose name starts with "orders-"
//	write:orders-*   append to them
//	admin:orders-*   also delete them; admin:* also manages tokens
//
// In a pattern "*" matches any run of characters and everything else
// matches itself. admin implies read and write on its pattern. A request
// that reads the whole log (ReadAll, Subscribe) only ever delivers the
// events of streams the token may read.
//
// The first time a data directory is served, Bootstrap creates an admin
// token (admin:*) and the server prints its secret once, or takes the
// secret from REWIND_ADMIN_TOKEN.
package auth
