package config

import "fmt"

// cursor is where a config reader stands in its file: the byte offset and
// its line and column, both counted from 1.
type cursor struct {
	file string
	src  []byte
	pos  int
	line int
	col  int
}

func (c *cursor) errAt(line, col int, format string, args ...any) *SyntaxError {
	return &SyntaxError{File: c.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// step moves past the byte at pos, which must be in src.
func (c *cursor) step() {
	if c.src[c.pos] == '\n' {
		c.line++
		c.col = 1
	} else {
		c.col++
	}
	c.pos++
}
