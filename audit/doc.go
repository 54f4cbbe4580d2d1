// Package audit makes Gatehouse's audit log tamper-evident and gets it out of the database:
// a hash chain over the events, signed checkpoints, a verifier, the export formats (JSON
// Lines, Pulumi-compatible CSV, CEF, OCSF), sinks, a continuous exporter and a retention
// archiver.
//
// # Tamper evidence
//
// Every event commits to the one before it: Hash(prev, e) is SHA-256 over a canonical,
// length-prefixed encoding of all of e's fields (see Hash) and prev, the previous event's
// hash (Genesis() for seq 1). The store assigns Seq, PrevHash and Hash when it appends,
// serialized on the chain head. Anyone who can write the database could still recompute
// the chain after editing it, so a Signer periodically signs checkpoints (kind, seq, hash,
// time, and the previous checkpoint's digest: checkpoints form a chain of their own) with an
// Ed25519 key kept outside the database (LoadOrCreateSigningKey). Verify streams the events
// and reports the first event that was changed, removed, reordered or cut from either end,
// any forged or mismatching checkpoint, and a checkpoint removed from the checkpoint chain.
// A cut of the newest events together with their checkpoints is only visible against an
// outside reference (VerifyOptions.Reference, ReadCheckpointFile).
//
// Retention removes a prefix of the log without breaking verification: the Archiver
// copies the old events to a sink and returns the last archived (seq, hash), the store
// keeps a signed retention checkpoint of it and deletes the rows, and Verify then starts
// from that checkpoint (VerifyFrom checks the archive from its anchor). A log that starts
// later than seq 1 without a retention checkpoint is reported as truncated at the head.
//
// # Sink URLs
//
// OpenSink opens a sink from a URL. Gatehouse's own query parameters are removed before a
// URL is used; every sink accepts name=NAME (the cursor key and metric label; default: the
// URL without credentials and query) and hostname=HOST (the host reported in CEF and
// syslog; default: os.Hostname()).
//
//	file:///var/log/gatehouse/audit.jsonl[?format=jsonl|cef|ocsf]
//	    Appends one line per event to a local file (created 0600) and fsyncs every batch.
//	    Repeated batches are absorbed (the last seq in the file is remembered).
//
//	syslog+tcp://collector:514
//	syslog+tls://collector:6514[?ca=/path/ca.pem&server_name=NAME&cert=/path&key=/path]
//	    RFC 5424 messages (facility 13 "log audit", override with facility=N; APP-NAME
//	    "gatehouse", MSGID "audit") carrying a CEF record, framed by octet counting
//	    (RFC 6587 3.4.1 / RFC 5425). timeout=10s bounds dialing and each write. TLS 1.2+;
//	    ca replaces the system roots, cert and key present a client certificate.
//
//	https://siem.example.com/ingest[?hmac_secret_env=VAR&timeout=30s&ca=/path/ca.pem]
//	    POSTs each batch as a JSON array of events (the JSONL objects); a 2xx response is
//	    the acknowledgement, anything else (redirects included) is retried. With
//	    hmac_secret_env, header X-Gatehouse-Signature: sha256=<hex HMAC-SHA256 of the body>
//	    keyed with the value of environment variable VAR (the secret never appears in the
//	    URL or in logs). X-Gatehouse-Audit-Batch: FIRST-LAST names the batch for
//	    de-duplication. Other query parameters are sent to the target. http:// is accepted
//	    only for loopback hosts, and checked again on every connection.
//
//	s3://bucket?endpoint=https://minio:9000&region=us-east-1&prefix=audit/
//	file:///var/lib/gatehouse/audit-archive?blob=1
//	mem://
//	    Any gocloud.dev/blob bucket URL (s3, file with blob=1, mem; others if the binary
//	    links their drivers). Each batch becomes one object, audit-<first>-<last>.jsonl
//	    (seqs zero-padded to 20 digits; format=cef or ocsf change the content and
//	    extension), so a repeated batch overwrites its object instead of duplicating it.
//	    The driver's own parameters (endpoint, region, prefix, create_dir, ...) pass through.
//
// # Delivery
//
// The Exporter delivers at least once and in order: it advances a sink's cursor (kept in
// the store, see CursorStore) only after the sink acknowledged the batch, and retries the
// same batch with capped exponential backoff while the sink is down. A sink may therefore
// see a batch twice; the file and blob sinks absorb that, webhook receivers can use the
// batch header, and every event carries its seq and id.
package audit
