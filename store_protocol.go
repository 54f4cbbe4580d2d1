package gatehouse

import "time"

// ProtocolProfile is what a stack's earlier updates taught about its programs, for the
// choice of each update's state protocol (package protocol): how many steps ran at once.
type ProtocolProfile struct {
	Updates     int     // updates observed
	Parallelism float64 // learned steps in flight (≥ 1)
	Source      string  // where the newest observation was read (protocol.Source*)
	// BatchPeriod is the client's journaling batch period learned from the newest journaled
	// update whose CLI set its own (0: never learned).
	BatchPeriod time.Duration
	Modified    time.Time
}

// UpdateProtocol is the state protocol chosen for one update, and why (package protocol).
type UpdateProtocol struct {
	Protocol    string        `json:"protocol"`    // checkpoint or journal
	Reason      string        `json:"reason"`      // protocol.Reason*
	RTT         time.Duration `json:"-"`           // the client's round trip as measured
	RTTMicros   int64         `json:"rttMicros"`   // RTT, in the API
	RTTSource   string        `json:"rttSource"`   // protocol.RTT*
	Parallelism float64       `json:"parallelism"` // the stack's learned parallelism used
	Resources   int           `json:"resources"`   // the stack's resource count used
	// BatchPeriodMicros is the client's journaling batch period the choice assumed (0:
	// unknown, journaled to learn it); ClientBatchPeriod that the CLI set its own
	// (PULUMI_JOURNALING_BATCH_PERIOD).
	BatchPeriodMicros int64 `json:"batchPeriodMicros"`
	ClientBatchPeriod bool  `json:"clientBatchPeriod"`
}

// ProtocolTx is the storage of protocol choices and what they learn (part of Tx). Both go
// with the stack (or update) when it is deleted.
type ProtocolTx interface {
	// GetProtocolProfile returns the stack's profile; ENOTFOUND when nothing was learned.
	GetProtocolProfile(stackID int64) (*ProtocolProfile, error)
	// PutProtocolProfile sets the stack's profile (Modified is the store's clock).
	PutProtocolProfile(stackID int64, p *ProtocolProfile) error
	// SetUpdateProtocol records the protocol chosen for an update; ENOTFOUND when the
	// update does not exist.
	SetUpdateProtocol(updateID string, p *UpdateProtocol) error
	// GetUpdateProtocol returns it; ENOTFOUND when none was recorded.
	GetUpdateProtocol(updateID string) (*UpdateProtocol, error)
}
