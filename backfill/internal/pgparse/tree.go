package pgparse

import "strings"

// Parse trees as ParseJSON returns them, decoded into any: each node is
// an object with one key, its kind.

// Node returns the only key and value of a parse tree node such as
// {"A_Const": {…}}.
func Node(v any) (string, map[string]any) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return "", nil
	}
	for k, x := range m {
		body, _ := x.(map[string]any)
		return k, body
	}
	return "", nil
}

// Walk calls fn for every node of a parse tree with its kind.
func Walk(v any, fn func(kind string, body map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		if k, body := Node(x); body != nil {
			fn(k, body)
		}
		for _, y := range x {
			Walk(y, fn)
		}
	case []any:
		for _, y := range x {
			Walk(y, fn)
		}
	}
}

// sessionFuncs are functions whose effect outlives the transaction that
// calls them or reaches beyond it, so that neither a dry run's rollback
// nor a failed chunk's undoes it: session settings (set_config with
// is_local false changes the search_path or role of the runner's later
// queries), session-level advisory locks (held after the transaction ends,
// on a pooled connection), other sessions and the server, files on the
// server, and other databases (dblink). SQL run on a backfill's pooled
// connections (a job's SQL, a throttle query) may not call them.
// pg_advisory_xact_lock and the like, released at commit, are fine.
var sessionFuncs = map[string]string{
	"set_config":                          "changes a setting for the rest of the session",
	"pg_advisory_lock":                    "takes a session-level lock that outlives the transaction",
	"pg_advisory_lock_shared":             "takes a session-level lock that outlives the transaction",
	"pg_try_advisory_lock":                "takes a session-level lock that outlives the transaction",
	"pg_try_advisory_lock_shared":         "takes a session-level lock that outlives the transaction",
	"pg_advisory_unlock":                  "releases a session-level lock",
	"pg_advisory_unlock_shared":           "releases a session-level lock",
	"pg_advisory_unlock_all":              "releases session-level locks",
	"pg_terminate_backend":                "ends another session",
	"pg_cancel_backend":                   "cancels another session's query",
	"pg_reload_conf":                      "reloads the server's configuration",
	"pg_rotate_logfile":                   "acts on the server",
	"pg_promote":                          "acts on the server",
	"pg_switch_wal":                       "acts on the server",
	"pg_create_restore_point":             "acts on the server",
	"pg_logical_emit_message":             "writes to the WAL outside the transaction",
	"lo_import":                           "reads a file on the server",
	"lo_export":                           "writes a file on the server",
	"pg_file_write":                       "writes a file on the server",
	"pg_file_rename":                      "renames a file on the server",
	"pg_file_unlink":                      "removes a file on the server",
	"pg_stat_reset":                       "resets the server's statistics",
	"pg_stat_reset_shared":                "resets the server's statistics",
	"pg_create_logical_replication_slot":  "acts on the server",
	"pg_create_physical_replication_slot": "acts on the server",
	"pg_drop_replication_slot":            "acts on the server",
}

// SessionFunc returns the first function of sessionFuncs (or of the
// dblink extension) a parse tree calls, and what it does.
func SessionFunc(tree any) (name, does string) {
	Walk(tree, func(kind string, body map[string]any) {
		if kind != "FuncCall" || name != "" {
			return
		}
		parts, _ := body["funcname"].([]any)
		if len(parts) == 0 {
			return
		}
		_, last := Node(parts[len(parts)-1])
		fn, _ := last["sval"].(string)
		if d, ok := sessionFuncs[fn]; ok {
			name, does = fn, d
		} else if strings.HasPrefix(fn, "dblink") {
			name, does = fn, "runs SQL in another database, outside the transaction"
		}
	})
	return name, does
}
