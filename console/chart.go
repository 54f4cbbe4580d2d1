package console

import (
	"strconv"
	"time"
)

// HourCount is one hour of the audit timeline: its events and, among them, its denials.
type HourCount struct {
	Hour    time.Time
	Events  int
	Denials int
}

// Bar is one bar of the chart, in SVG user units.
type Bar struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

// Tick is an axis label.
type Tick struct {
	X, Y float64
	Text string
}

// Chart is a server-rendered bar chart of events and denials per hour (plain SVG: no
// script, no inline style; colours come from the stylesheet by class).
type Chart struct {
	W, H  float64
	Bars  []Bar
	Ticks []Tick
	Max   int
	Total int
	Deny  int
	Empty bool
}

// HourChart lays out the counts (oldest first) as pairs of bars: events, denials.
func HourChart(hours []HourCount) Chart {
	const w, h, top, bottom, left = 960.0, 200.0, 10.0, 24.0, 36.0
	c := Chart{W: w, H: h}
	for _, hc := range hours {
		c.Max = max(c.Max, hc.Events)
		c.Total += hc.Events
		c.Deny += hc.Denials
	}
	c.Empty = c.Total == 0
	if len(hours) == 0 {
		return c
	}
	scale := 1.0
	if c.Max > 0 {
		scale = (h - top - bottom) / float64(c.Max)
	}
	slot := (w - left) / float64(len(hours))
	bw := slot * 0.4
	for i, hc := range hours {
		x := left + float64(i)*slot
		label := hc.Hour.UTC().Format("2006-01-02 15:00")
		eh := float64(hc.Events) * scale
		dh := float64(hc.Denials) * scale
		c.Bars = append(c.Bars,
			Bar{X: x + slot*0.1, Y: h - bottom - eh, W: bw, H: eh, Class: "bar-events", Title: label + ": " + strconv.Itoa(hc.Events) + " events"},
			Bar{X: x + slot*0.1 + bw, Y: h - bottom - dh, W: bw, H: dh, Class: "bar-denials", Title: label + ": " + strconv.Itoa(hc.Denials) + " denials"},
		)
		if step := max(1, len(hours)/8); i%step == 0 {
			c.Ticks = append(c.Ticks, Tick{X: x, Y: h - 6, Text: hc.Hour.UTC().Format("Jan 2 15h")})
		}
	}
	c.Ticks = append(c.Ticks, Tick{X: 2, Y: top + 10, Text: strconv.Itoa(c.Max)})
	return c
}
