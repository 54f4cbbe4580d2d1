package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"unicode/utf8"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// hashDomain separates event hashes from every other SHA-256 use (and from later versions
// of this encoding). Changing anything in appendEventCanonical requires a new domain string.
const hashDomain = "gatehouse/audit/event/v1"

// HashSize is the size of event hashes and of Genesis.
const HashSize = sha256.Size

// Genesis returns the PrevHash of the first event of a chain (Seq 1): 32 zero bytes.
func Genesis() []byte { return make([]byte, HashSize) }

// Hash returns the hash of e chained to prev, the hash of the event before it (Genesis for
// the first event). It is SHA-256 over an unambiguous canonical encoding:
//
//	str(domain) u64(Seq) bytes(prev) str(ID) i64(unix seconds) u32(nanoseconds)
//	i64(OrgID) str(OrgName) str(ActorKind) str(ActorName) i64(UserID) str(TokenID)
//	str(SourceIP) str(UserAgent) str(Action) str(Target) str(Outcome) str(Reason)
//	str(RequestID) u64(len(Details)) {str(key) str(value)}* (keys in byte order)
//
// where integers are big-endian, str and bytes are a u64 byte length followed by the bytes,
// and the time is taken in UTC (seconds and nanoseconds: the exact Unix nanosecond value,
// without the int64 overflow of UnixNano outside 1678..2262). e.PrevHash and e.Hash are
// not read: prev is what is chained.
//
// Strings are hashed as valid UTF-8: each byte that is not part of a valid UTF-8 sequence
// counts as U+FFFD, which is exactly what encoding/json writes for it. An event therefore
// hashes the same before and after a round trip through JSON (a details column, a JSONL
// export or archive).
//
// Store implementations call Hash when they append: e.Seq = head.Seq+1, e.PrevHash =
// head.Hash, e.Hash = Hash(head.Hash, e). The stored Time must read back to the same
// instant (store nanoseconds, or truncate e.Time to the column's precision before hashing).
func Hash(prev []byte, e *gatehouse.AuditEvent) []byte {
	var buf [768]byte
	b := appendEventCanonical(buf[:0], prev, e)
	sum := sha256.Sum256(b)
	return sum[:]
}

func appendEventCanonical(b, prev []byte, e *gatehouse.AuditEvent) []byte {
	b = appendStr(b, hashDomain)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	b = appendBytes(b, prev)
	b = appendStr(b, e.ID)
	t := e.Time.UTC()
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.OrgID))
	b = appendStr(b, e.OrgName)
	b = appendStr(b, e.ActorKind)
	b = appendStr(b, e.ActorName)
	b = binary.BigEndian.AppendUint64(b, uint64(e.UserID))
	b = appendStr(b, e.TokenID)
	b = appendStr(b, e.SourceIP)
	b = appendStr(b, e.UserAgent)
	b = appendStr(b, e.Action)
	b = appendStr(b, e.Target)
	b = appendStr(b, e.Outcome)
	b = appendStr(b, e.Reason)
	b = appendStr(b, e.RequestID)
	b = binary.BigEndian.AppendUint64(b, uint64(len(e.Details)))
	if len(e.Details) > 0 {
		var kbuf [16]string
		keys := kbuf[:0]
		for k := range e.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = appendStr(b, k)
			b = appendStr(b, e.Details[k])
		}
	}
	return b
}

func appendBytes(b, p []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
	return append(b, p...)
}

func appendStr(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = jsonUTF8(s)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// jsonUTF8 replaces every byte of s that is not part of a valid UTF-8 sequence with U+FFFD,
// byte by byte, as encoding/json does when it marshals a string.
func jsonUTF8(s string) string {
	out := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, s[i:i+size]...)
		}
		i += size
	}
	return string(out)
}
