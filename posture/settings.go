// Package posture is Gatehouse's security posture: the token usage inventory (who used
// every token, from where, on what), anomalies in that use, address allow-lists and the
// assess loop as a report (Assess) with a severity and a fix for every finding.
//
// Nothing here decides access: allow-lists are enforced by the request path with
// AllowList.Permits, and the report only reads.
package posture

import (
	"encoding/json"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Settings are an organization's posture thresholds (GET/PUT /api/orgs/{org}/posture/settings).
// Zero values take the defaults (DefaultSettings).
type Settings struct {
	// LearningDays and LearningRequests: a token's address and hour anomalies (and rate
	// spikes) are only flagged once the token was first seen at least LearningDays ago
	// and made at least LearningRequests requests; before that every use is learned.
	LearningDays     int `json:"learningDays"`
	LearningRequests int `json:"learningRequests"`
	// DenialBurst is how many denied requests (403) one token may get in one clock hour
	// before a denial burst is flagged.
	DenialBurst int `json:"denialBurst"`
	// SpikeFactor and SpikeMin: a clock hour with at least SpikeMin requests and more than
	// SpikeFactor times the token's average active hour of the last 7 days is a spike.
	SpikeFactor float64 `json:"spikeFactor"`
	SpikeMin    int     `json:"spikeMin"`
	// RotationDays: tokens older than this should have been rotated (report finding).
	RotationDays int `json:"rotationDays"`
	// UnusedDays: tokens not used for this long are reported as unused.
	UnusedDays int `json:"unusedDays"`
	// MaxAdmins: more organization admins than this is a finding.
	MaxAdmins int `json:"maxAdmins"`
	// ProductionTag selects production stacks and environments ("env=production").
	ProductionTag string `json:"productionTag"`
	// PeriodDays is the period the report covers (anomalies, environment opens).
	PeriodDays int `json:"periodDays"`
	// VerifyDays: the audit chain should have been verified (a checkpoint signed) within this.
	VerifyDays int `json:"verifyDays"`
	// ExportLagEvents: a continuous-export sink further behind than this is lagging.
	ExportLagEvents int64 `json:"exportLagEvents"`
}

// DefaultSettings are the thresholds of an organization that set none.
func DefaultSettings() Settings {
	return Settings{
		LearningDays: 7, LearningRequests: 50, DenialBurst: 20, SpikeFactor: 10, SpikeMin: 200,
		RotationDays: 90, UnusedDays: 30, MaxAdmins: 3, ProductionTag: "env=production",
		PeriodDays: 30, VerifyDays: 7, ExportLagEvents: 10000,
	}
}

// withDefaults fills zero fields from DefaultSettings.
func (s Settings) withDefaults() Settings {
	d := DefaultSettings()
	if s.LearningDays <= 0 {
		s.LearningDays = d.LearningDays
	}
	if s.LearningRequests <= 0 {
		s.LearningRequests = d.LearningRequests
	}
	if s.DenialBurst <= 0 {
		s.DenialBurst = d.DenialBurst
	}
	if s.SpikeFactor <= 0 {
		s.SpikeFactor = d.SpikeFactor
	}
	if s.SpikeMin <= 0 {
		s.SpikeMin = d.SpikeMin
	}
	if s.RotationDays <= 0 {
		s.RotationDays = d.RotationDays
	}
	if s.UnusedDays <= 0 {
		s.UnusedDays = d.UnusedDays
	}
	if s.MaxAdmins <= 0 {
		s.MaxAdmins = d.MaxAdmins
	}
	if s.ProductionTag == "" {
		s.ProductionTag = d.ProductionTag
	}
	if s.PeriodDays <= 0 {
		s.PeriodDays = d.PeriodDays
	}
	if s.VerifyDays <= 0 {
		s.VerifyDays = d.VerifyDays
	}
	if s.ExportLagEvents <= 0 {
		s.ExportLagEvents = d.ExportLagEvents
	}
	return s
}

// Validate checks settings a caller sent.
func (s Settings) Validate() error {
	if s.LearningDays < 0 || s.LearningRequests < 0 || s.DenialBurst < 0 || s.SpikeFactor < 0 || s.SpikeMin < 0 ||
		s.RotationDays < 0 || s.UnusedDays < 0 || s.MaxAdmins < 0 || s.PeriodDays < 0 || s.VerifyDays < 0 || s.ExportLagEvents < 0 {
		return gatehouse.Errorf(gatehouse.EINVALID, "posture settings must not be negative")
	}
	if s.ProductionTag != "" {
		if k, _, ok := strings.Cut(s.ProductionTag, "="); !ok || k == "" {
			return gatehouse.Errorf(gatehouse.EINVALID, "productionTag must be NAME=VALUE, e.g. env=production")
		}
	}
	if s.PeriodDays > 366 || s.LearningDays > 366 {
		return gatehouse.Errorf(gatehouse.EINVALID, "periods are at most 366 days")
	}
	return nil
}

// LoadSettings reads the organization's settings (defaults filled in).
func LoadSettings(tx gatehouse.Tx, orgID int64) (Settings, error) {
	var s Settings
	if orgID == 0 {
		return DefaultSettings(), nil
	}
	b, err := tx.GetPostureSettings(orgID)
	if err != nil {
		return s, err
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &s); err != nil {
			return s, gatehouse.Wrap(gatehouse.EINTERNAL, err, "corrupt posture settings")
		}
	}
	return s.withDefaults(), nil
}

func (s Settings) prodTag() (string, string) {
	k, v, _ := strings.Cut(s.ProductionTag, "=")
	return k, v
}

func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }
