package sqlstore

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Webhooks and their delivery queue (migration 0018).

const webhookCols = `id, org_id, stack_id, name, display_name, payload_url, active, format, filters, groups_, secret, created, modified`

func scanWebhook(s interface{ Scan(...any) error }) (*gatehouse.Webhook, error) {
	var h gatehouse.Webhook
	var active, created, modified int64
	var filters, groups string
	if err := s.Scan(&h.ID, &h.OrgID, &h.StackID, &h.Name, &h.DisplayName, &h.PayloadURL, &active, &h.Format, &filters, &groups, &h.Secret, &created, &modified); err != nil {
		return nil, err
	}
	h.Active, h.Created, h.Modified = active != 0, fromNS(created), fromNS(modified)
	if len(h.Secret) == 0 {
		h.Secret = nil
	}
	_ = json.Unmarshal([]byte(filters), &h.Filters)
	_ = json.Unmarshal([]byte(groups), &h.Groups)
	return &h, nil
}

func jsonList(l []string) string {
	if l == nil {
		l = []string{}
	}
	b, _ := json.Marshal(l)
	return string(b)
}

func (t *tx) CreateWebhook(h *gatehouse.Webhook) error {
	if h.Name == "" || h.PayloadURL == "" {
		return gatehouse.Errorf(gatehouse.EINVALID, "a webhook needs a name and a payload URL")
	}
	h.Created, h.Modified = t.now, t.now
	err := t.queryRow(`INSERT INTO webhooks (org_id, stack_id, name, display_name, payload_url, active, format, filters, groups_, secret, created, modified)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		h.OrgID, h.StackID, validText(h.Name), validText(h.DisplayName), validText(h.PayloadURL), b2i(h.Active), h.Format,
		jsonList(h.Filters), jsonList(h.Groups), h.Secret, ns(h.Created), ns(h.Modified)).Scan(&h.ID)
	return t.conflictOr(err, "webhook '"+h.Name+"' already exists")
}

func (t *tx) GetWebhook(orgID, stackID int64, name string) (*gatehouse.Webhook, error) {
	h, err := scanWebhook(t.queryRow(`SELECT `+webhookCols+` FROM webhooks WHERE org_id = ? AND stack_id = ? AND name = ?`, orgID, stackID, name))
	if err != nil {
		return nil, one(err, "webhook '"+name+"' not found")
	}
	return h, nil
}

func (t *tx) GetWebhookByID(id int64) (*gatehouse.Webhook, error) {
	h, err := scanWebhook(t.queryRow(`SELECT `+webhookCols+` FROM webhooks WHERE id = ?`, id))
	if err != nil {
		return nil, one(err, "webhook not found")
	}
	return h, nil
}

func (t *tx) ListWebhooks(orgID, stackID int64) ([]gatehouse.Webhook, error) {
	return orEmpty(queryAll(t, scanWebhook, `SELECT `+webhookCols+` FROM webhooks WHERE org_id = ? AND stack_id = ? ORDER BY name`, orgID, stackID))
}

func (t *tx) UpdateWebhook(h *gatehouse.Webhook) error {
	h.Modified = t.now
	r, err := t.exec(`UPDATE webhooks SET display_name = ?, payload_url = ?, active = ?, format = ?, filters = ?, groups_ = ?, secret = ?, modified = ? WHERE id = ?`,
		validText(h.DisplayName), validText(h.PayloadURL), b2i(h.Active), h.Format, jsonList(h.Filters), jsonList(h.Groups), h.Secret, ns(h.Modified), h.ID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "webhook not found")
	}
	if !h.Active {
		// Its queued deliveries are cancelled (an attempt in flight may still deliver:
		// RecordWebhookAttempt keeps the cancellation unless it did).
		_, err = t.exec(`UPDATE webhook_deliveries SET status = ?, error = ? WHERE webhook_id = ? AND status = ?`,
			gatehouse.DeliveryCancelled, "cancelled: the webhook was deactivated", h.ID, gatehouse.DeliveryPending)
	}
	return err
}

func (t *tx) DeleteWebhook(id int64) error {
	if _, err := t.exec(`DELETE FROM webhook_delivery_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE webhook_id = ?)`, id); err != nil {
		return err
	}
	if _, err := t.exec(`DELETE FROM webhook_deliveries WHERE webhook_id = ?`, id); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM webhooks WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "webhook not found")
	}
	return nil
}

// deleteStackWebhooks removes a stack's webhooks with their deliveries (DeleteStack).
func (t *tx) deleteStackWebhooks(stackID int64) error {
	if _, err := t.exec(`DELETE FROM webhook_delivery_attempts WHERE delivery_id IN (SELECT d.id FROM webhook_deliveries d JOIN webhooks h ON h.id = d.webhook_id WHERE h.stack_id = ?)`, stackID); err != nil {
		return err
	}
	if _, err := t.exec(`DELETE FROM webhook_deliveries WHERE webhook_id IN (SELECT id FROM webhooks WHERE stack_id = ?)`, stackID); err != nil {
		return err
	}
	_, err := t.exec(`DELETE FROM webhooks WHERE stack_id = ?`, stackID)
	return err
}

func newDeliveryUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (t *tx) EnqueueWebhookDelivery(d *gatehouse.WebhookDelivery) error {
	if d.UUID == "" {
		d.UUID = newDeliveryUUID()
	}
	d.Created, d.NextAttempt, d.Status, d.Attempts = t.now, t.now, gatehouse.DeliveryPending, 0
	err := t.queryRow(`INSERT INTO webhook_deliveries (webhook_id, uuid, kind, event, payload, status, attempts, next_attempt, created) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING id`,
		d.WebhookID, d.UUID, d.Kind, d.Event, d.Payload, d.Status, ns(d.NextAttempt), ns(d.Created)).Scan(&d.ID)
	if err != nil {
		return t.wrap(err)
	}
	return nil
}

const deliveryCols = `id, webhook_id, uuid, kind, event, payload, status, attempts, next_attempt, lease, created, last_attempt, duration_ms, request_url, request_headers, response_code, response_headers, response_body, error`

func scanDelivery(s interface{ Scan(...any) error }) (*gatehouse.WebhookDelivery, error) {
	var d gatehouse.WebhookDelivery
	var next, created, last int64
	if err := s.Scan(&d.ID, &d.WebhookID, &d.UUID, &d.Kind, &d.Event, &d.Payload, &d.Status, &d.Attempts, &next, &d.Lease, &created, &last,
		&d.DurationMS, &d.RequestURL, &d.RequestHeaders, &d.ResponseCode, &d.ResponseHeaders, &d.ResponseBody, &d.Error); err != nil {
		return nil, err
	}
	d.NextAttempt, d.Created, d.LastAttempt = fromNS(next), fromNS(created), fromNS(last)
	return &d, nil
}

func (t *tx) ClaimWebhookDeliveries(lease string, leaseFor time.Duration, limit int) ([]gatehouse.WebhookDelivery, error) {
	if lease == "" || limit <= 0 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "a claim needs a lease token and a limit")
	}
	now := ns(t.now)
	ids, err := queryColumn[int64](t, `SELECT id FROM webhook_deliveries WHERE status = ? AND next_attempt <= ? AND lease_until <= ? ORDER BY next_attempt, id LIMIT ?`,
		gatehouse.DeliveryPending, now, now, limit)
	if err != nil {
		return nil, err
	}
	var out []gatehouse.WebhookDelivery
	for _, id := range ids {
		// The condition is checked again under the row's write lock: of two claimers that
		// saw the row due, one updates it and the other's update matches nothing.
		r, err := t.exec(`UPDATE webhook_deliveries SET lease = ?, lease_until = ?, attempts = attempts + 1 WHERE id = ? AND status = ? AND lease_until <= ?`,
			lease, ns(t.now.Add(leaseFor)), id, gatehouse.DeliveryPending, now)
		if err != nil {
			return nil, err
		}
		if affected(r) == 0 {
			continue
		}
		d, err := scanDelivery(t.queryRow(`SELECT `+deliveryCols+` FROM webhook_deliveries WHERE id = ?`, id))
		if err != nil {
			return nil, dbErr(err)
		}
		out = append(out, *d)
	}
	return out, nil
}

func (t *tx) RecordWebhookAttempt(id int64, lease string, a *gatehouse.WebhookAttempt) error {
	switch a.Status {
	case gatehouse.DeliveryPending, gatehouse.DeliveryDelivered, gatehouse.DeliveryFailed, gatehouse.DeliveryCancelled:
	default:
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid delivery status %q", a.Status)
	}
	next := t.now.Add(max(a.RetryAfter, 0))
	// A delivery cancelled while this attempt was under way stays cancelled unless the
	// attempt delivered it.
	r, err := t.exec(`UPDATE webhook_deliveries SET status = CASE WHEN status = ? AND ? <> ? THEN status ELSE ? END, next_attempt = ?, lease = '', lease_until = 0, last_attempt = ?, duration_ms = ?,
		request_url = ?, request_headers = ?, response_code = ?, response_headers = ?, response_body = ?, error = ? WHERE id = ? AND lease = ?`,
		gatehouse.DeliveryCancelled, a.Status, gatehouse.DeliveryDelivered, a.Status, ns(next), ns(a.At), a.DurationMS, validText(a.RequestURL), validText(a.RequestHeaders), a.ResponseCode,
		validText(a.ResponseHeaders), validText(a.ResponseBody), validText(a.Error), id, lease)
	if err != nil {
		return err
	}
	if affected(r) == 0 || lease == "" {
		return gatehouse.Errorf(gatehouse.EGONE, "the delivery's lease has passed to another process")
	}
	if err := t.queryRow(`SELECT attempts FROM webhook_deliveries WHERE id = ?`, id).Scan(&a.Number); err != nil {
		return dbErr(err)
	}
	if _, err := t.exec(`INSERT INTO webhook_delivery_attempts (delivery_id, attempt, at, status, duration_ms, request_url, request_headers, response_code, response_headers, response_body, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, a.Number, ns(a.At), a.Status, a.DurationMS, validText(a.RequestURL), validText(a.RequestHeaders), a.ResponseCode,
		validText(a.ResponseHeaders), validText(a.ResponseBody), validText(a.Error)); err != nil {
		return err
	}
	_, err = t.exec(`DELETE FROM webhook_delivery_attempts WHERE delivery_id = ? AND attempt <= ?`, id, a.Number-gatehouse.MaxWebhookAttemptsKept)
	return err
}

func (t *tx) ListWebhookAttempts(ids []int64) (map[int64][]gatehouse.WebhookAttempt, error) {
	scan := func(sc scanner) (*gatehouse.WebhookAttempt, error) {
		var a gatehouse.WebhookAttempt
		var at int64
		if err := sc.Scan(&a.Number, &at, &a.Status, &a.DurationMS, &a.RequestURL, &a.RequestHeaders, &a.ResponseCode, &a.ResponseHeaders, &a.ResponseBody, &a.Error); err != nil {
			return nil, err
		}
		a.At = fromNS(at)
		return &a, nil
	}
	out := make(map[int64][]gatehouse.WebhookAttempt, len(ids))
	for _, id := range ids {
		as, err := queryAll(t, scan, `SELECT attempt, at, status, duration_ms, request_url, request_headers, response_code, response_headers, response_body, error
			FROM webhook_delivery_attempts WHERE delivery_id = ? ORDER BY attempt, id`, id)
		if err != nil {
			return nil, err
		}
		if len(as) > 0 { // a delivery without attempts has no key
			out[id] = append(out[id], as...)
		}
	}
	return out, nil
}

func (t *tx) GetWebhookDelivery(id int64) (*gatehouse.WebhookDelivery, error) {
	d, err := scanDelivery(t.queryRow(`SELECT `+deliveryCols+` FROM webhook_deliveries WHERE id = ?`, id))
	if err != nil {
		return nil, one(err, "delivery not found")
	}
	return d, nil
}

func (t *tx) ListWebhookDeliveries(webhookID int64, limit int) ([]gatehouse.WebhookDelivery, error) {
	if limit <= 0 {
		limit = 100
	}
	return orEmpty(queryAll(t, scanDelivery, `SELECT `+deliveryCols+` FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?`, webhookID, limit))
}

func (t *tx) PruneWebhookDeliveries(before time.Time) (int, error) {
	// Expired, or beyond the newest MaxWebhookDeliveriesKept of its webhook.
	r, err := t.exec(`DELETE FROM webhook_deliveries WHERE status <> ? AND (created < ? OR id <= (SELECT d2.id FROM webhook_deliveries d2
		WHERE d2.webhook_id = webhook_deliveries.webhook_id ORDER BY d2.id DESC LIMIT 1 OFFSET ?))`, gatehouse.DeliveryPending, ns(before), gatehouse.MaxWebhookDeliveriesKept)
	if err != nil {
		return 0, err
	}
	n := int(affected(r))
	if n > 0 {
		if _, err := t.exec(`DELETE FROM webhook_delivery_attempts WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = webhook_delivery_attempts.delivery_id)`); err != nil {
			return 0, err
		}
	}
	return n, nil
}
