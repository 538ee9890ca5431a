package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// report is what a scenario prints: tables for people, everything for -json.
type report struct {
	Scenario string    `json:"scenario"`
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Host     hostInfo  `json:"host"`
	Servers  []*server `json:"servers"`
	Params   any       `json:"params"`
	Results  any       `json:"results"`
	Tables   []table   `json:"tables"`
	Notes    []string  `json:"notes,omitempty"`
}

type table struct {
	Title   string     `json:"title"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
}

func newReport(c *common) *report {
	return &report{
		Scenario: c.args[0],
		Command:  "signalbench " + strings.Join(c.args, " "),
		Started:  time.Now().UTC().Truncate(time.Second),
		Host:     host(),
	}
}

func (r *report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *report) addTable(title string, columns ...string) *table {
	r.Tables = append(r.Tables, table{Title: title, Columns: columns})
	return &r.Tables[len(r.Tables)-1]
}

func (t *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = cell(c)
	}
	t.Rows = append(t.Rows, row)
}

// cell formats a value for a table.
func cell(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		switch {
		case v != v:
			return "-"
		case v >= 100 || v <= -100:
			return fmt.Sprintf("%.0f", v)
		case v >= 10 || v <= -10:
			return fmt.Sprintf("%.1f", v)
		default:
			return fmt.Sprintf("%.2f", v)
		}
	case time.Duration:
		return v.Round(time.Microsecond).String()
	default:
		return fmt.Sprint(v)
	}
}

func (r *report) write(w io.Writer, jsonOut bool) error {
	if jsonOut {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "%s\n", r.Command)
	fmt.Fprintf(w, "host: %d CPUs, GOMAXPROCS %d, %s, open files %d, load %s\n", r.Host.CPUs, r.Host.GOMAXPROCS, r.Host.GoVersion, r.Host.NoFile, r.Host.LoadAvg)
	for _, s := range r.Servers {
		pid := "pid unknown"
		if s.PID > 0 {
			pid = fmt.Sprintf("pid %d", s.PID)
		}
		fmt.Fprintf(w, "server: %s (%s) at %s, %s\n", s.Kind, s.Spawn, s.Addr, pid)
	}
	for _, t := range r.Tables {
		fmt.Fprintf(w, "\n%s\n", t.Title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(t.Columns, "\t")+"\t")
		for _, row := range t.Rows {
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		tw.Flush()
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintf(w, "note: %s\n", n)
		}
	}
	return nil
}

// ratio returns a/b, or NaN when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return nan()
	}
	return a / b
}

func nan() float64 { var z float64; return z / z }

// mib formats bytes as MiB.
func mib(b float64) float64 { return b / (1 << 20) }

// kib formats bytes as KiB.
func kib(b float64) float64 { return b / (1 << 10) }
