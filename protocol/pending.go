package protocol

import "bytes"

var pendingKey = []byte(`"pending_operations":`)

// PendingOperations counts the pending operations of a checkpoint's deployment document
// without decoding it: the CLI writes pending_operations after the resources, so the key
// is searched from the end (inside a JSON string its quotes would be escaped, so a match
// is a key). It returns 0 when there are none or the document is not what it expects;
// the count only feeds what is learned of the program's parallelism.
func PendingOperations(deployment []byte) int {
	i := bytes.LastIndex(deployment, pendingKey)
	if i < 0 {
		return 0
	}
	rest := bytes.TrimLeft(deployment[i+len(pendingKey):], " \t\r\n")
	if len(rest) == 0 || rest[0] != '[' {
		return 0
	}
	n, depth, inString, escaped, empty := 0, 0, false, false, true
	for _, c := range rest {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
			empty = false
		case '[', '{':
			if depth == 1 {
				empty = false
			}
			depth++
		case ']', '}':
			depth--
			if depth == 0 {
				if !empty {
					n++
				}
				return n
			}
		case ',':
			if depth == 1 {
				n++
			}
		case ' ', '\t', '\r', '\n':
		default:
			empty = false
		}
	}
	return 0 // truncated
}
