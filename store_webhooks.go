package gatehouse

import "time"

// Webhook is an organization's or a stack's webhook (Pulumi Cloud's org and stack hooks).
// Secret is the signing secret sealed by the webhooks' secrets manager (nil: no secret):
// the plaintext is never stored.
type Webhook struct {
	ID          int64
	OrgID       int64
	StackID     int64 // 0: an organization webhook; negative: an environment's (webhook.EnvScope)
	Name        string
	DisplayName string
	PayloadURL  string
	Active      bool
	Format      string // raw, slack, ms_teams
	Filters     []string
	Groups      []string
	Secret      []byte
	Created     time.Time
	Modified    time.Time
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
	// DeliveryCancelled: its webhook was deactivated or deleted before it was delivered;
	// it is never sent (reactivating the webhook does not revive it).
	DeliveryCancelled = "cancelled"
)

// Bounds of the delivery log.
const (
	// MaxWebhookAttemptsKept is how many attempts of one delivery the log keeps (the newest).
	MaxWebhookAttemptsKept = 10
	// MaxWebhookDeliveriesKept is how many ended (delivered, failed, cancelled) deliveries
	// of one webhook the log keeps (the newest); older ones are pruned with the expired.
	MaxWebhookDeliveriesKept = 1000
)

// WebhookDelivery is one event to deliver to one webhook: a row of the durable delivery
// queue and, after its last attempt, of the webhook's delivery log.
type WebhookDelivery struct {
	ID        int64
	WebhookID int64
	// UUID is the delivery's Pulumi-Webhook-ID (the same on every attempt).
	UUID string
	// Kind is the Pulumi-Webhook-Kind (stack_update, stack, ping, ...); Event the filter
	// event (update_succeeded, ...).
	Kind    string
	Event   string
	Payload []byte
	Status  string
	// Attempts counts the attempts begun (a claim is an attempt, also when its process
	// dies before it ends).
	Attempts    int
	NextAttempt time.Time
	Created     time.Time
	// Facts of the last attempt.
	LastAttempt     time.Time
	DurationMS      int64
	RequestURL      string
	RequestHeaders  string
	ResponseCode    int
	ResponseHeaders string
	ResponseBody    string
	Error           string
	// Lease is the claim of the process delivering it now (empty when none).
	Lease string
}

// WebhookAttempt is the outcome of one delivery attempt.
type WebhookAttempt struct {
	// Number is the attempt's number (1 for the first); set by the store.
	Number          int
	At              time.Time
	DurationMS      int64
	RequestURL      string
	RequestHeaders  string
	ResponseCode    int
	ResponseHeaders string
	ResponseBody    string
	Error           string
	// Status is the delivery's state afterwards: delivered, failed, cancelled, or pending
	// (a retry at RetryAfter from the transaction's time). A delivery cancelled meanwhile
	// stays cancelled unless this attempt delivered it.
	Status     string
	RetryAfter time.Duration
}

// WebhookTx is the storage of webhooks and their delivery queue (part of Tx). A stack's
// webhooks go with the stack, an organization's with the organization, a webhook's
// deliveries with the webhook.
type WebhookTx interface {
	// CreateWebhook stores h, setting ID, Created and Modified; ECONFLICT when its scope (the
	// organization, or the stack) has a webhook of that name.
	CreateWebhook(h *Webhook) error
	// GetWebhook finds a webhook by scope (stackID 0: the organization's) and name.
	GetWebhook(orgID, stackID int64, name string) (*Webhook, error)
	GetWebhookByID(id int64) (*Webhook, error)
	// ListWebhooks lists a scope's webhooks by name (stackID 0: the organization's own).
	ListWebhooks(orgID, stackID int64) ([]Webhook, error)
	// UpdateWebhook replaces the display name, URL, active flag, format, filters, groups and
	// secret of the webhook h.ID. Deactivating it cancels its pending deliveries.
	UpdateWebhook(h *Webhook) error
	DeleteWebhook(id int64) error
	// EnqueueWebhookDelivery adds a pending delivery due now; sets ID, Created, Status.
	EnqueueWebhookDelivery(d *WebhookDelivery) error
	// ClaimWebhookDeliveries claims up to limit due pending deliveries whose lease (if any)
	// has run out, for lease from now: each gets lease token and one more attempt. Two
	// transactions, in any processes, never claim one delivery for overlapping leases.
	ClaimWebhookDeliveries(lease string, leaseFor time.Duration, limit int) ([]WebhookDelivery, error)
	// RecordWebhookAttempt records the outcome of the attempt that holds lease and ends the
	// lease; EGONE when the lease is no longer the delivery's (another process took it over).
	// The attempt is added to the delivery's attempts (the newest MaxWebhookAttemptsKept).
	RecordWebhookAttempt(id int64, lease string, a *WebhookAttempt) error
	// GetWebhookDelivery and ListWebhookDeliveries (newest first, at most limit) read the
	// delivery log.
	GetWebhookDelivery(id int64) (*WebhookDelivery, error)
	ListWebhookDeliveries(webhookID int64, limit int) ([]WebhookDelivery, error)
	// ListWebhookAttempts returns the recorded attempts of the deliveries ids, oldest first.
	ListWebhookAttempts(ids []int64) (map[int64][]WebhookAttempt, error)
	// PruneWebhookDeliveries deletes ended (not pending) deliveries created before before,
	// and those of each webhook beyond its newest MaxWebhookDeliveriesKept, with their
	// attempts; it returns how many deliveries it deleted.
	PruneWebhookDeliveries(before time.Time) (int, error)
}
