package sqlstore

import (
	"encoding/json"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Processed secret-scanning deliveries (migration 0005).

func (t *tx) PutScanDelivery(d *gatehouse.ScanDelivery) error {
	if d.Received.IsZero() {
		d.Received = t.now
	}
	labels := d.Labels
	if labels == nil {
		labels = []string{}
	}
	b, err := json.Marshal(labels)
	if err != nil {
		return err
	}
	if _, err := t.exec(`DELETE FROM scan_deliveries WHERE received < ?`, ns(t.now.Add(-gatehouse.ScanDeliveryRetention))); err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO scan_deliveries (digest, key_id, received, labels) VALUES (?, ?, ?, ?)`,
		d.Digest[:], validText(d.KeyID), ns(d.Received), string(b))
	return t.conflictOr(err, "this secret-scanning delivery was already processed")
}

func (t *tx) GetScanDelivery(digest [32]byte) (*gatehouse.ScanDelivery, error) {
	var d gatehouse.ScanDelivery
	var raw []byte
	var received int64
	var labels string
	err := t.queryRow(`SELECT digest, key_id, received, labels FROM scan_deliveries WHERE digest = ?`, digest[:]).Scan(&raw, &d.KeyID, &received, &labels)
	if err != nil {
		return nil, one(err, "secret-scanning delivery not found")
	}
	d.Digest = digestOf(raw)
	d.Received = fromNS(received)
	if err := json.Unmarshal([]byte(labels), &d.Labels); err != nil {
		return nil, dbErr(err)
	}
	return &d, nil
}
