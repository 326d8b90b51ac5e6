package casemodel

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Target is a first-response target: either a span on the wall clock
// (Clock, counted around the clock) or a number of business days, each as
// long as one working day of the business calendar.
type Target struct {
	Clock        time.Duration
	BusinessDays int
}

// ParseTarget reads a target as written in the config: a duration with a
// unit ("2h", "90m": around the clock) or a number of business days ("1bd",
// "2bd").
func ParseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "bd"); ok {
		days, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || days <= 0 {
			return Target{}, fmt.Errorf("%q: business days must be a whole number ≥ 1 followed by bd, such as 2bd", s)
		}
		return Target{BusinessDays: days}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return Target{}, fmt.Errorf("%q: use a positive duration around the clock such as 2h, or business days such as 1bd", s)
	}
	return Target{Clock: d}, nil
}

// String writes the target as the config does: "2h" or "1bd".
func (t Target) String() string {
	if t.BusinessDays > 0 {
		return fmt.Sprintf("%dbd", t.BusinessDays)
	}
	return t.Clock.String()
}

// Calendar is the business calendar response targets are counted on: the
// working days and the working hours (wall-clock offsets from midnight) in
// one time zone. Business time is real elapsed time inside working hours,
// so a day on which the clocks change is handled by the time package.
type Calendar struct {
	Location *time.Location
	Days     []time.Weekday
	Start    time.Duration // e.g. 9h: 09:00
	End      time.Duration // e.g. 17h: 17:00; must be after Start
}

// DefaultCalendar is Monday to Friday, 09:00 to 17:00 UTC.
func DefaultCalendar() Calendar {
	return Calendar{Location: time.UTC,
		Days:  []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday},
		Start: 9 * time.Hour, End: 17 * time.Hour}
}

// DayLength is one business day: the working hours of one day.
func (cal Calendar) DayLength() time.Duration { return cal.End - cal.Start }

// wall returns the instant at offset off (hours and minutes from midnight)
// on the calendar day of t, in the calendar's zone.
func (cal Calendar) wall(y int, m time.Month, d int, off time.Duration) time.Time {
	mins := int(off / time.Minute)
	return time.Date(y, m, d, mins/60, mins%60, 0, 0, cal.Location)
}

// AddBusiness returns the instant d of business time after from. A start
// outside working hours counts from the next opening.
func (cal Calendar) AddBusiness(from time.Time, d time.Duration) time.Time {
	loc := cal.Location
	if loc == nil {
		loc = time.UTC
		cal.Location = loc
	}
	if len(cal.Days) == 0 || cal.End <= cal.Start {
		return from.Add(d) // no working time at all: fall back to the wall clock
	}
	t := from.In(loc)
	for range 366 * 20 { // bounded: a calendar always has a working day each week
		y, m, day := t.Date()
		if slices.Contains(cal.Days, t.Weekday()) {
			open, close := cal.wall(y, m, day, cal.Start), cal.wall(y, m, day, cal.End)
			if t.Before(open) {
				t = open
			}
			if t.Before(close) {
				if avail := close.Sub(t); d <= avail {
					return t.Add(d)
				} else {
					d -= avail
				}
			}
		}
		t = time.Date(y, m, day+1, 0, 0, 0, 0, loc)
	}
	return from.Add(d)
}

// Targets is the response-target policy: one target per priority on one
// business calendar.
type Targets struct {
	Calendar   Calendar
	ByPriority map[Priority]Target
}

// DefaultTargets are design.md's: urgent 2 hours around the clock, high 1
// business day, normal 2, low 5, on DefaultCalendar.
func DefaultTargets() Targets {
	return Targets{Calendar: DefaultCalendar(), ByPriority: map[Priority]Target{
		Urgent: {Clock: 2 * time.Hour},
		High:   {BusinessDays: 1},
		Normal: {BusinessDays: 2},
		Low:    {BusinessDays: 5},
	}}
}

// Due is the first-response deadline for a case of priority p opened at from.
func (ts Targets) Due(p Priority, from time.Time) time.Time {
	t, ok := ts.ByPriority[p]
	if !ok {
		t = DefaultTargets().ByPriority[p]
	}
	if t.BusinessDays > 0 {
		return ts.Calendar.AddBusiness(from, time.Duration(t.BusinessDays)*ts.Calendar.DayLength())
	}
	return from.Add(t.Clock)
}
