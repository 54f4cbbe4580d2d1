package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// randomHex returns n random bytes in hex.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func newLeaseID() (string, error) { return randomHex(24) }

// The API's shapes (Pulumi's GetDeploymentResponse, ListDeploymentResponseV2,
// DeploymentLogs, GetDeploymentUpdatesUpdateInfo; field names as the CLI reads them).

// UserInfo is who requested a run.
type UserInfo struct {
	Name        string `json:"name"`
	GitHubLogin string `json:"githubLogin"`
	AvatarURL   string `json:"avatarUrl"`
}

// Step is a step of a job.
type Step struct {
	Name        string    `json:"name"`
	Status      string    `json:"status"`
	Started     time.Time `json:"started,omitempty"`
	LastUpdated time.Time `json:"lastUpdated,omitempty"`
}

// JobView is the run's one job.
type JobView struct {
	Status      string    `json:"status"`
	Started     time.Time `json:"started,omitempty"`
	LastUpdated time.Time `json:"lastUpdated,omitempty"`
	Steps       []Step    `json:"steps"`
}

// NestedUpdate is an update a run made.
type NestedUpdate struct {
	ID          string            `json:"id"`
	UpdateID    string            `json:"updateID"`
	Version     int64             `json:"version"`
	StartTime   int64             `json:"startTime"`
	EndTime     int64             `json:"endTime"`
	Result      string            `json:"result"`
	Kind        string            `json:"kind"`
	Message     string            `json:"message"`
	Environment map[string]string `json:"environment"`
}

// View is a deployment as the API shows it.
type View struct {
	ID              string         `json:"id"`
	Created         string         `json:"created"`
	Modified        string         `json:"modified"`
	Status          string         `json:"status"`
	Version         int64          `json:"version"`
	LatestVersion   int64          `json:"latestVersion,omitempty"`
	RequestedBy     UserInfo       `json:"requestedBy"`
	ProjectName     string         `json:"projectName,omitempty"`
	StackName       string         `json:"stackName,omitempty"`
	Paused          bool           `json:"paused,omitempty"`
	PulumiOperation string         `json:"pulumiOperation"`
	Updates         []NestedUpdate `json:"updates"`
	Jobs            []JobView      `json:"jobs"`
	Initiator       string         `json:"initiator,omitempty"`
	Message         string         `json:"message,omitempty"`
}

// ListView is a page of deployments.
type ListView struct {
	Deployments  []View `json:"deployments"`
	ItemsPerPage int64  `json:"itemsPerPage"`
	Total        int64  `json:"total"`
}

// UpdateInfo is an element of GET .../deployments/{id}/updates.
type UpdateInfo struct {
	UpdateID      string `json:"updateID"`
	Version       int    `json:"version"`
	LatestVersion int    `json:"latestVersion"`
}

// LogsView is a page of output (streaming mode).
type LogsView struct {
	Lines     []LogLine `json:"lines"`
	NextToken string    `json:"nextToken,omitempty"`
}

func jobStatus(status string) string {
	switch status {
	case gatehouse.DeployNotStarted:
		return "not-started"
	case gatehouse.DeploySkipped:
		return "succeeded"
	}
	return status
}

// ViewOf renders d of stack.
func ViewOf(stack *gatehouse.Stack, d *gatehouse.Deployment, paused bool) View {
	v := View{ID: d.ID, Created: d.Created.UTC().Format(time.RFC3339), Modified: d.Modified.UTC().Format(time.RFC3339),
		Status: d.Status, Version: int64(d.Version), RequestedBy: UserInfo{Name: d.RequestedBy, GitHubLogin: d.RequestedBy},
		ProjectName: stack.Project, StackName: stack.Name, Paused: paused, PulumiOperation: d.Operation, Initiator: d.Initiator,
		Updates: []NestedUpdate{}, Message: d.Message}
	job := JobView{Status: jobStatus(d.Status), Started: d.Started, LastUpdated: d.Modified, Steps: []Step{}}
	if !d.Started.IsZero() {
		job.Steps = append(job.Steps, Step{Name: "pulumi " + d.Operation, Status: jobStatus(d.Status), Started: d.Started, LastUpdated: d.Modified})
	}
	v.Jobs = []JobView{job}
	if d.UpdateID != "" {
		res := ""
		if gatehouse.DeployFinished(d.Status) {
			res = d.Status
		}
		end := int64(0)
		if !d.Ended.IsZero() {
			end = d.Ended.Unix()
		}
		v.Updates = append(v.Updates, NestedUpdate{ID: d.UpdateID, UpdateID: d.UpdateID, Version: int64(d.UpdateVersion),
			StartTime: d.Started.Unix(), EndTime: end, Result: res, Kind: d.Operation, Environment: map[string]string{}})
	}
	return v
}

// Logs returns the output after the continuation token: the lines, and the next token;
// "" once the run has ended and every line was read.
func (s *Service) Logs(ctx context.Context, d *gatehouse.Deployment, continuation string) (*LogsView, error) {
	s.ExpireIfDue(ctx, d)
	var after int64
	if continuation != "" {
		n, err := strconv.ParseInt(continuation, 10, 64)
		if err != nil || n < 0 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid continuationToken")
		}
		after = n
	}
	out := &LogsView{Lines: []LogLine{}}
	err := s.store.View(ctx, func(tx gatehouse.Tx) error {
		cur, err := tx.GetDeployment(d.ID)
		if err != nil {
			return err
		}
		lines, err := tx.ListDeployLogs(d.ID, after, 500)
		if err != nil {
			return err
		}
		out.Lines = LogLines(lines)
		if len(lines) > 0 {
			after = lines[len(lines)-1].Seq
		}
		// Read the status before the lines would race with a last append; the status read
		// in the same transaction is consistent with them.
		if len(lines) > 0 || !gatehouse.DeployFinished(cur.Status) {
			out.NextToken = strconv.FormatInt(after, 10)
		}
		return nil
	})
	return out, err
}

// LogLines converts stored log lines to the API's shape (never nil: an empty list is []).
func LogLines(ls []gatehouse.DeployLogLine) []LogLine {
	out := make([]LogLine, 0, len(ls))
	for _, l := range ls {
		out = append(out, LogLine{Header: l.Header, Line: l.Line, At: l.At})
	}
	return out
}
