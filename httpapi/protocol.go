package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/protocol"
)

// The per-update choice of the state protocol (package protocol): what the server measures
// of the client's network, what it learns of each stack's programs, and where the choice
// is shown (a log line, gatehouse_update_protocol_total, the update's record).

type connKey struct{}

// ConnContext is the http.Server's ConnContext: it keeps the connection's timing (and the
// connection, for its kernel RTT) with every request it carries.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, protocol.NewConn(c))
}

// connOf returns the request's connection facts; nil when the server was built without
// ConnContext (then only a trusted proxy's header tells the round trip).
func connOf(r *http.Request) *protocol.Conn {
	c, _ := r.Context().Value(connKey{}).(*protocol.Conn)
	return c
}

// peerHost is the address of the connection's peer (not X-Forwarded-For's client).
func peerHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// measureNetwork is what the request says about the client's round trip.
func (s *Server) measureNetwork(rq *Request) protocol.Network {
	o := protocol.Observed{}
	peer := peerHost(rq.Request)
	if len(s.cfg.TrustedProxies) > 0 {
		if ip := net.ParseIP(peer); ip != nil && trusted(s.cfg.TrustedProxies, ip) {
			o.ViaTrustedProxy = true
			o.Header = rq.Header.Get(protocol.RTTHeader)
		}
	}
	if c := connOf(rq.Request); c != nil && !o.ViaTrustedProxy {
		o.Kernel = c.KernelRTT()
		if rq.ProtoMajor == 1 {
			o.Gap = c.Gap()
		}
		if o.Gap == 0 { // a fresh connection: the peer's other connections
			o.Gap = s.clients.Gap(peer, time.Now())
		}
	}
	return protocol.Resolve(o)
}

// chooseProtocol decides the protocol of the update being started (in its start
// transaction, which records the choice).
func (s *Server) chooseProtocol(tx gatehouse.Tx, rq *Request, u *gatehouse.Update, clientJournal bool, network protocol.Network) (protocol.Decision, error) {
	shape := protocol.Shape{Resources: rq.Stack.ResourceCount}
	periodSet := false
	if !u.DryRun && s.cfg.Journal == JournalAuto {
		p, err := tx.GetProtocolProfile(u.StackID)
		switch {
		case err == nil:
			shape.Updates, shape.Parallelism, shape.BatchPeriod = p.Updates, p.Parallelism, p.BatchPeriod
		case !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
			return protocol.Decision{}, err
		}
		periodSet = protocol.ClientSetsBatchPeriod(programEnvironment(u.Program))
	}
	return protocol.Choose(protocol.Input{
		Mode: protocol.Mode(s.cfg.Journal), ClientJournal: clientJournal, DryRun: u.DryRun,
		Destroy: u.Kind == gatehouse.KindDestroy, Network: network, Shape: shape, BatchPeriodSet: periodSet,
	}), nil
}

// programEnvironment is the metadata environment of an update's create request (the CLI's
// facts about itself: pulumi.version, the PULUMI_* variables set, CI and git details); nil
// when the request holds none.
func programEnvironment(program []byte) map[string]string {
	var req struct {
		Metadata struct {
			Environment map[string]string `json:"environment"`
		} `json:"metadata"`
	}
	if json.Unmarshal(program, &req) != nil {
		return nil
	}
	return req.Metadata.Environment
}

func updateProtocol(d protocol.Decision) *gatehouse.UpdateProtocol {
	return &gatehouse.UpdateProtocol{
		Protocol: string(d.Protocol), Reason: d.Reason, RTT: d.RTT, RTTMicros: d.RTT.Microseconds(),
		RTTSource: d.RTTSource, Parallelism: d.Parallelism, Resources: d.Resources,
		BatchPeriodMicros: d.BatchPeriod.Microseconds(), ClientBatchPeriod: d.BatchPeriodSet,
	}
}

// announceProtocol logs and counts a real run's choice, once its start has committed.
func (s *Server) announceProtocol(rq *Request, u *gatehouse.Update, d protocol.Decision) {
	s.metrics.protocolChoices.WithLabelValues(string(d.Protocol), d.Reason).Inc()
	s.log.LogAttrs(rq.Context(), slog.LevelInfo, "update protocol",
		slog.String("update", u.ID), slog.String("stack", rq.Stack.Ref().String()), slog.String("kind", string(u.Kind)),
		slog.String("protocol", string(d.Protocol)), slog.String("reason", d.Reason),
		slog.Float64("rtt_ms", float64(d.RTT.Microseconds())/1000), slog.String("rtt_source", d.RTTSource),
		slog.Float64("parallelism", d.Parallelism), slog.Int("resources", d.Resources),
		slog.Float64("batch_period_ms", float64(d.BatchPeriod.Microseconds())/1000), slog.Bool("client_batch_period", d.BatchPeriodSet),
		slog.Float64("predicted_checkpoint_ms_per_step", float64(d.CheckpointsStep.Microseconds())/1000),
		slog.Float64("predicted_journal_ms_per_step", float64(d.JournalStep.Microseconds())/1000),
		slog.String("request_id", rq.ID))
}

// announceProtocolDetails puts the choice into the start's audit event.
func (s *Server) announceProtocolDetails(rq *Request, d protocol.Decision) {
	rq.Detail("protocol", string(d.Protocol))
	rq.Detail("protocol_reason", d.Reason)
	rq.Detail("rtt_us", strconv.FormatInt(d.RTT.Microseconds(), 10))
}

// stepEventJSON is the part of a step's engine event the choice reads.
type stepEventJSON struct {
	Metadata struct {
		URN string `json:"urn"`
	} `json:"metadata"`
}

// learnProtocol folds what an ended update showed of its program into its stack's profile
// (in the transaction that ends it). Previews and cancelled updates teach nothing, nor
// does an update too small to tell. A destroy (not the program's shape) teaches only the
// client's journaling batch period, which every journaled update whose CLI set its own
// teaches (the newest replaces what was learned: it is the client's setting today).
func learnProtocol(tx gatehouse.Tx, u *gatehouse.Update, status gatehouse.UpdateStatus, obs protocol.Observation) error {
	if u.DryRun || status == gatehouse.StatusCancelled {
		return nil
	}
	p, source, parallel := obs.Parallelism()
	parallel = parallel && u.Kind != gatehouse.KindDestroy
	var period time.Duration
	periodLearned := false
	if obs.BatchGaps >= protocol.MinSample {
		switch rec, err := tx.GetUpdateProtocol(u.ID); {
		case err == nil && rec.ClientBatchPeriod:
			rtt := rec.RTT
			if rec.RTTSource == protocol.RTTUnknown {
				rtt = 0 // assumed, not measured: the gap stands for period and round trip
			}
			period, periodLearned = obs.BatchPeriod(rtt)
		case err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
			return err
		}
	}
	if !parallel && !periodLearned {
		return nil
	}
	shape := protocol.Shape{}
	prof, err := tx.GetProtocolProfile(u.StackID)
	switch {
	case err == nil:
		shape.Updates, shape.Parallelism, shape.Source, shape.BatchPeriod = prof.Updates, prof.Parallelism, prof.Source, prof.BatchPeriod
	case !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
		return err
	}
	if parallel {
		shape = protocol.Fold(shape, p, source)
	}
	if periodLearned {
		shape.BatchPeriod = period
	}
	return tx.PutProtocolProfile(u.StackID, &gatehouse.ProtocolProfile{Updates: shape.Updates, Parallelism: shape.Parallelism,
		Source: shape.Source, BatchPeriod: shape.BatchPeriod})
}
