package httpapi

import (
	fastjson "github.com/segmentio/encoding/json"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/jsondepth"
)

// The most elements a batch call takes: the CLI sends at most 50 engine events and 100
// journal entries per call (and splits a journal batch answered 413). Without a bound, a
// body of tiny elements (`{"sequence":1}` is 14 bytes) decoded into tens of millions of
// values, each several times its size in memory: one events call of a preview's lease,
// which a reader gets, took gigabytes (found in review).
// Batch encryption and decryption (which anyone who may read a stack calls) are bounded
// likewise: an empty plaintext is 3 bytes of body and became a ciphertext of 29 bytes plus
// two slices. The CLI encrypts at most 1,000 values per call and decrypts a state's
// secrets in one call, so that bound is generous.
const (
	maxEventsPerBatch  = 1000
	maxJournalPerBatch = 10000
	maxSecretsPerBatch = 100000
)

// decodeBatch is decode for a body whose arrays are batches of at most max elements (what
// names them in the refusal): a larger batch is refused (413) before its elements are
// decoded. Every top-level array is counted, whatever its key (the decoder matches keys
// case-insensitively, and the last of duplicate keys wins).
func (rq *Request) decodeBatch(v any, max int, what string) error {
	b, err := rq.readJSON()
	if err != nil {
		return err
	}
	var top map[string]fastjson.RawMessage
	if _, err := fastjson.Parse(b, &top, fastjson.ZeroCopy); err == nil {
		n := 0
		for _, raw := range top {
			k, _ := jsondepth.ArrayLen(raw) // 0 for a value that is no array
			n += k
		}
		if n > max {
			return gatehouse.Errorf(gatehouse.ETOOLARGE, "a call takes at most %d %s (this one has %d): send them in several", max, what, n)
		}
	}
	return parseJSON(b, v, 0)
}
