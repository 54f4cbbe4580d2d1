package protocol

import (
	"bytes"

	"github.com/gatehouse-dev/gatehouse/internal/jsondepth"
)

var pendingKey = []byte(`"pending_operations":`)

// pendingTail is how much of a checkpoint's end is searched for its pending operations.
const pendingTail = 64 << 10

// PendingOperations counts the pending operations of a checkpoint's deployment document
// without decoding it: it finds the key in the document's tail (inside a JSON string its quotes would be escaped,
// so a match is a key: the deployment's own, unless a resource has an input or output of
// that name, which only skews what is learned) with the vectorized forward search, which
// costs tens of microseconds on a 450 KB checkpoint where a backward search took
// milliseconds. It returns 0 when there are none or the document is not what it expects;
// the count only feeds what is learned of the program's parallelism.
func PendingOperations(deployment []byte) int {
	// The CLI writes pending_operations after the resources: only the document's tail is
	// searched (the operations of a checkpoint with more than pendingTail bytes of them are
	// not counted: a checkpoint's handling must not grow with the whole state for this).
	tail := deployment[max(0, len(deployment)-pendingTail):]
	i := bytes.Index(tail, pendingKey)
	if i < 0 {
		return 0
	}
	n, _ := jsondepth.ArrayLen(tail[i+len(pendingKey):]) // 0 when not an array, or truncated
	return n
}
