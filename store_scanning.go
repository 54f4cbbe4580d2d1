package gatehouse

import "time"

// ScanDelivery is a secret-scanning report (a GitHub secret scanning partner delivery) that
// has been processed: its leaked tokens were revoked and recorded. It is kept so that a
// redelivery of the same report (GitHub retries) is answered with the same labels without
// revoking or recording anything again.
type ScanDelivery struct {
	// Digest is the SHA-256 of the raw request body: a redelivery has the same body, whatever
	// its signature (ECDSA signatures are randomized and malleable, so they cannot identify
	// a delivery).
	Digest [32]byte
	// KeyID is the identifier of the public key the delivery was verified with.
	KeyID    string
	Received time.Time
	// Labels are the answers given, one per reported match in body order:
	// "true_positive" or "false_positive". They never contain token values.
	Labels []string
}

// ScanningTx is the storage of processed secret-scanning deliveries (part of Tx).
type ScanningTx interface {
	// PutScanDelivery records a processed delivery; ECONFLICT when one with the same digest
	// is already recorded (a concurrent redelivery won). It also forgets deliveries older
	// than ScanDeliveryRetention.
	PutScanDelivery(d *ScanDelivery) error
	// GetScanDelivery returns the delivery with this body digest; ENOTFOUND when none.
	GetScanDelivery(digest [32]byte) (*ScanDelivery, error)
}

// ScanDeliveryRetention is how long processed deliveries are remembered for replay
// detection; GitHub gives up retrying a delivery long before.
const ScanDeliveryRetention = 90 * 24 * time.Hour
