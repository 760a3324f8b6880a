package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file reads the assignment files xm and xl use: a sequence of
// NAME = VALUE statements whose values are literals (numbers, strings,
// True/False/None, lists and tuples of them). xm executes the file as
// Python; anything beyond literals (variables, operators, calls, if/else,
// imports) is reported as a *SyntaxError naming the construct instead of
// being guessed at.

// valueKind is the type of a literal value.
type valueKind int

const (
	kindString valueKind = iota
	kindInt
	kindFloat
	kindBool
	kindNone
	kindList
)

func (k valueKind) String() string {
	switch k {
	case kindString:
		return "string"
	case kindInt:
		return "integer"
	case kindFloat:
		return "number"
	case kindBool:
		return "boolean"
	case kindNone:
		return "None"
	case kindList:
		return "list"
	}
	return "value"
}

// value is one literal.
type value struct {
	kind valueKind
	str  string  // kindString
	num  int64   // kindInt; kindBool as 0/1
	flt  float64 // kindFloat
	list []value // kindList
	line int
	col  int
}

// text renders a value the way the config wrote it, for Unknown settings
// and messages.
func (v value) text() string {
	switch v.kind {
	case kindString:
		return v.str
	case kindInt:
		return strconv.FormatInt(v.num, 10)
	case kindFloat:
		return strconv.FormatFloat(v.flt, 'g', -1, 64)
	case kindBool:
		if v.num != 0 {
			return "True"
		}
		return "False"
	case kindNone:
		return "None"
	case kindList:
		parts := make([]string, len(v.list))
		for i, e := range v.list {
			if e.kind == kindString {
				parts[i] = strconv.Quote(e.str)
			} else {
				parts[i] = e.text()
			}
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return ""
}

// assignment is one NAME = VALUE statement.
type assignment struct {
	key    string
	val    value
	append bool // xl's NAME += VALUE
	line   int
	col    int
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokNewline
	tokName
	tokInt
	tokFloat
	tokString
	tokOp
)

type token struct {
	kind tokKind
	text string // name, operator, or the source text of a number
	str  string // decoded string literal
	num  int64
	flt  float64
	line int
	col  int
}

// pyLexer splits a file into tokens. Newlines inside brackets and after a
// backslash are not tokens, as in Python.
type pyLexer struct {
	cursor
	depth int
	warn  func(line int, format string, args ...any)
}

func (lx *pyLexer) peekByte(off int) byte {
	if lx.pos+off < len(lx.src) {
		return lx.src[lx.pos+off]
	}
	return 0
}

func (lx *pyLexer) advance(n int) {
	for i := 0; i < n && lx.pos < len(lx.src); i++ {
		lx.step()
	}
}

func (lx *pyLexer) next() (token, error) {
	for {
		if lx.pos >= len(lx.src) {
			return token{kind: tokEOF, line: lx.line, col: lx.col}, nil
		}
		c := lx.src[lx.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\f' || c == '\r':
			lx.advance(1)
			continue
		case c == '#':
			for lx.pos < len(lx.src) && lx.src[lx.pos] != '\n' {
				lx.advance(1)
			}
			continue
		case c == '\\':
			n := 1
			if lx.peekByte(1) == '\r' {
				n++
			}
			if lx.peekByte(n) == '\n' {
				lx.advance(n + 1)
				continue
			}
			return token{}, lx.errAt(lx.line, lx.col, "unexpected backslash")
		case c == '\n':
			line, col := lx.line, lx.col
			lx.advance(1)
			if lx.depth > 0 {
				continue
			}
			return token{kind: tokNewline, line: line, col: col}, nil
		}
		break
	}
	line, col := lx.line, lx.col
	c := lx.src[lx.pos]
	switch {
	case isNameStart(c):
		start := lx.pos
		for lx.pos < len(lx.src) && isNameChar(lx.src[lx.pos]) {
			lx.advance(1)
		}
		name := string(lx.src[start:lx.pos])
		// String prefixes: r"", u"", b"", ur"", ...
		if q := lx.peekByte(0); (q == '"' || q == '\'') && isStringPrefix(name) {
			return lx.lexString(line, col, strings.ContainsAny(name, "rR"))
		}
		return token{kind: tokName, text: name, line: line, col: col}, nil
	case c >= '0' && c <= '9' || c == '.' && lx.peekByte(1) >= '0' && lx.peekByte(1) <= '9':
		return lx.lexNumber(line, col)
	case c == '"' || c == '\'':
		return lx.lexString(line, col, false)
	}
	// Operators: the two-character ones first.
	for _, op := range []string{"+=", "-=", "*=", "/=", "%=", "==", "!=", "<=", ">=", "**", "//", "<<", ">>"} {
		if strings.HasPrefix(string(lx.src[lx.pos:min(lx.pos+2, len(lx.src))]), op) {
			lx.advance(2)
			return token{kind: tokOp, text: op, line: line, col: col}, nil
		}
	}
	if strings.IndexByte("=[](){},:;+-*/%<>.&|^~@`", c) >= 0 {
		switch c {
		case '[', '(', '{':
			lx.depth++
		case ']', ')', '}':
			if lx.depth > 0 {
				lx.depth--
			}
		}
		lx.advance(1)
		return token{kind: tokOp, text: string(c), line: line, col: col}, nil
	}
	r, _ := utf8.DecodeRune(lx.src[lx.pos:])
	return token{}, lx.errAt(line, col, "unexpected character %q", r)
}

func isNameStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isNameChar(c byte) bool { return isNameStart(c) || c >= '0' && c <= '9' }

func isStringPrefix(s string) bool {
	switch strings.ToLower(s) {
	case "r", "u", "b", "ur", "br", "rb":
		return true
	}
	return false
}

func (lx *pyLexer) lexNumber(line, col int) (token, error) {
	start := lx.pos
	isFloat := false
	if lx.src[lx.pos] == '0' && (lx.peekByte(1)|0x20 == 'x' || lx.peekByte(1)|0x20 == 'o' || lx.peekByte(1)|0x20 == 'b') {
		lx.advance(2)
		for lx.pos < len(lx.src) && isHexDigit(lx.src[lx.pos]) {
			lx.advance(1)
		}
	} else {
		for lx.pos < len(lx.src) {
			c := lx.src[lx.pos]
			switch {
			case c >= '0' && c <= '9':
			case c == '.':
				isFloat = true
			case c == 'e' || c == 'E':
				isFloat = true
				if s := lx.peekByte(1); s == '+' || s == '-' {
					lx.advance(1)
				}
			default:
				goto done
			}
			lx.advance(1)
		}
	}
done:
	text := string(lx.src[start:lx.pos])
	// Python 2 long suffix.
	if c := lx.peekByte(0); !isFloat && (c == 'L' || c == 'l') {
		lx.advance(1)
	}
	if c := lx.peekByte(0); isNameChar(c) {
		return token{}, lx.errAt(line, col, "invalid number %q", text+string(c))
	}
	if isFloat {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil || math.IsInf(f, 0) {
			return token{}, lx.errAt(line, col, "invalid number %q", text)
		}
		return token{kind: tokFloat, text: text, flt: f, line: line, col: col}, nil
	}
	digits, base := text, 10
	switch {
	case len(text) > 1 && text[0] == '0' && text[1]|0x20 == 'x':
		digits, base = text[2:], 16
	case len(text) > 1 && text[0] == '0' && text[1]|0x20 == 'o':
		digits, base = text[2:], 8
	case len(text) > 1 && text[0] == '0' && text[1]|0x20 == 'b':
		digits, base = text[2:], 2
	case len(text) > 1 && text[0] == '0':
		// Python 2, which xm runs on, reads 0644 as octal.
		digits, base = text[1:], 8
		if lx.warn != nil {
			lx.warn(line, "number %s has a leading zero: read as octal, as Python 2 does", text)
		}
	}
	n, err := strconv.ParseInt(digits, base, 64)
	if err != nil {
		return token{}, lx.errAt(line, col, "invalid number %q", text)
	}
	return token{kind: tokInt, text: text, num: n, line: line, col: col}, nil
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'f'
}

// lexString reads a single, double or triple quoted string starting at
// the quote, decoding Python escapes unless raw.
func (lx *pyLexer) lexString(line, col int, raw bool) (token, error) {
	q := lx.src[lx.pos]
	triple := lx.peekByte(1) == q && lx.peekByte(2) == q
	if triple {
		lx.advance(3)
	} else {
		lx.advance(1)
	}
	var b strings.Builder
	for {
		if lx.pos >= len(lx.src) {
			return token{}, lx.errAt(line, col, "string starting here is not closed")
		}
		c := lx.src[lx.pos]
		if c == q {
			if !triple {
				lx.advance(1)
				break
			}
			if lx.peekByte(1) == q && lx.peekByte(2) == q {
				lx.advance(3)
				break
			}
		}
		if c == '\n' && !triple {
			return token{}, lx.errAt(line, col, "string starting here is not closed on its line")
		}
		if c != '\\' {
			b.WriteByte(c)
			lx.advance(1)
			continue
		}
		// Backslash.
		e := lx.peekByte(1)
		if lx.pos+1 >= len(lx.src) {
			return token{}, lx.errAt(line, col, "string starting here is not closed")
		}
		if raw {
			// A raw string keeps the backslash; it still escapes a quote.
			b.WriteByte('\\')
			b.WriteByte(e)
			lx.advance(2)
			continue
		}
		switch e {
		case '\n':
			// Line continuation inside the string.
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case 'x':
			if lx.pos+3 < len(lx.src) && isHexDigit(lx.src[lx.pos+2]) && isHexDigit(lx.src[lx.pos+3]) {
				n, _ := strconv.ParseUint(string(lx.src[lx.pos+2:lx.pos+4]), 16, 8)
				b.WriteByte(byte(n))
				lx.advance(4)
				continue
			}
			return token{}, lx.errAt(lx.line, lx.col, "invalid \\x escape in string")
		case '0', '1', '2', '3', '4', '5', '6', '7':
			n, i := 0, 1
			for ; i <= 3 && lx.pos+i < len(lx.src) && lx.src[lx.pos+i] >= '0' && lx.src[lx.pos+i] <= '7'; i++ {
				n = n*8 + int(lx.src[lx.pos+i]-'0')
			}
			b.WriteByte(byte(n))
			lx.advance(i)
			continue
		default:
			// Python keeps unknown escapes verbatim.
			b.WriteByte('\\')
			b.WriteByte(e)
		}
		lx.advance(2)
	}
	return token{kind: tokString, str: b.String(), line: line, col: col}, nil
}

// pyParser builds assignments from tokens with one token of lookahead.
type pyParser struct {
	lx    *pyLexer
	tok   token
	depth int // nesting of lists being read
}

// maxListDepth bounds list nesting so hostile input cannot exhaust the
// stack; real configs nest two deep (xl's vnuma).
const maxListDepth = 64

// pythonKeywords are statements and expression keywords of real Python
// that a literal config cannot contain.
var pythonKeywords = map[string]string{
	"if": "an if statement", "elif": "an elif clause", "else": "an else clause",
	"for": "a for loop", "while": "a while loop", "def": "a function definition",
	"class": "a class definition", "import": "an import statement", "from": "an import statement",
	"try": "a try statement", "except": "an except clause", "finally": "a finally clause",
	"with": "a with statement", "return": "a return statement", "print": "a print statement",
	"del": "a del statement", "pass": "a pass statement", "assert": "an assert statement",
	"global": "a global statement", "exec": "an exec statement", "raise": "a raise statement",
	"lambda": "a lambda expression", "and": "a boolean expression", "or": "a boolean expression",
	"not": "a boolean expression", "in": "an in expression", "is": "an is expression",
	"yield": "a yield expression", "break": "a break statement", "continue": "a continue statement",
}

// parseAssignments reads a whole xm/xl file. allowAppend enables xl's +=.
func parseAssignments(file string, src []byte, allowAppend bool, warn func(line int, format string, args ...any)) ([]assignment, error) {
	p := &pyParser{lx: &pyLexer{cursor: cursor{file: file, src: src, line: 1, col: 1}, warn: warn}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	var out []assignment
	for {
		switch {
		case p.tok.kind == tokEOF:
			return out, nil
		case p.tok.kind == tokNewline || p.isOp(";"):
			if err := p.advance(); err != nil {
				return nil, err
			}
			continue
		}
		a, err := p.statement(allowAppend)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
		if p.tok.kind != tokNewline && p.tok.kind != tokEOF && !p.isOp(";") {
			return nil, p.unexpectedAfterValue()
		}
	}
}

func (p *pyParser) advance() error {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *pyParser) isOp(op string) bool { return p.tok.kind == tokOp && p.tok.text == op }

func (p *pyParser) errHere(format string, args ...any) *SyntaxError {
	return p.lx.errAt(p.tok.line, p.tok.col, format, args...)
}

// pyCode marks an error as caused by real Python code in the config.
func pyCode(e *SyntaxError) *SyntaxError {
	e.python = true
	return e
}

func (p *pyParser) statement(allowAppend bool) (assignment, error) {
	t := p.tok
	if t.kind != tokName {
		return assignment{}, p.errHere("expected a setting name, found %s", describe(t))
	}
	if what, ok := pythonKeywords[t.text]; ok {
		return assignment{}, pyCode(p.errHere("%s (%q) is Python code, not a config setting; only NAME = literal lines are supported", what, t.text))
	}
	if err := p.advance(); err != nil {
		return assignment{}, err
	}
	a := assignment{key: t.text, line: t.line, col: t.col}
	switch {
	case p.isOp("="):
	case p.isOp("+=") && allowAppend:
		a.append = true
	case p.tok.kind == tokOp && strings.HasSuffix(p.tok.text, "=") && p.tok.text != "==":
		return assignment{}, pyCode(p.errHere("augmented assignment %q is Python code; write %s = VALUE", p.tok.text, t.text))
	case p.isOp("("):
		return assignment{}, pyCode(p.errHere("function call %s(...) is Python code, not a config setting", t.text))
	case p.isOp("."):
		return assignment{}, pyCode(p.errHere("attribute access %s.… is Python code, not a config setting", t.text))
	default:
		return assignment{}, p.errHere("expected = after %s, found %s", t.text, describe(p.tok))
	}
	if err := p.advance(); err != nil {
		return assignment{}, err
	}
	v, err := p.expr()
	if err != nil {
		return assignment{}, err
	}
	a.val = v
	return a, nil
}

// expr reads one literal and rejects any operator that follows it.
func (p *pyParser) expr() (value, error) {
	v, err := p.atom()
	if err != nil {
		return value{}, err
	}
	if p.tok.kind == tokOp {
		switch p.tok.text {
		case "%":
			return value{}, pyCode(p.errHere("%% string formatting is Python code; write the resulting literal value instead"))
		case "+", "-", "*", "/", "//", "**", "<<", ">>", "&", "|", "^", "==", "!=", "<", ">", "<=", ">=":
			return value{}, pyCode(p.errHere("operator %q: expressions are Python code; write the resulting literal value instead", p.tok.text))
		case "[":
			return value{}, pyCode(p.errHere("indexing is Python code, not a literal value"))
		case "(":
			return value{}, pyCode(p.errHere("call of a value is Python code, not a literal value"))
		case ".":
			return value{}, pyCode(p.errHere("method call or attribute access is Python code, not a literal value"))
		}
	}
	if p.tok.kind == tokName {
		if what, ok := pythonKeywords[p.tok.text]; ok {
			return value{}, pyCode(p.errHere("%s (%q) is Python code, not a literal value", what, p.tok.text))
		}
	}
	return v, nil
}

func (p *pyParser) atom() (value, error) {
	t := p.tok
	switch t.kind {
	case tokString:
		var b strings.Builder
		b.WriteString(t.str)
		if err := p.advance(); err != nil {
			return value{}, err
		}
		// Adjacent string literals concatenate, as in Python.
		for p.tok.kind == tokString {
			b.WriteString(p.tok.str)
			if err := p.advance(); err != nil {
				return value{}, err
			}
		}
		return value{kind: kindString, str: b.String(), line: t.line, col: t.col}, nil
	case tokInt:
		return value{kind: kindInt, num: t.num, line: t.line, col: t.col}, p.advance()
	case tokFloat:
		return value{kind: kindFloat, flt: t.flt, line: t.line, col: t.col}, p.advance()
	case tokName:
		switch t.text {
		case "True":
			return value{kind: kindBool, num: 1, line: t.line, col: t.col}, p.advance()
		case "False":
			return value{kind: kindBool, num: 0, line: t.line, col: t.col}, p.advance()
		case "None":
			return value{kind: kindNone, line: t.line, col: t.col}, p.advance()
		}
		if what, ok := pythonKeywords[t.text]; ok {
			return value{}, pyCode(p.errHere("%s (%q) is Python code, not a literal value", what, t.text))
		}
		if err := p.advance(); err != nil {
			return value{}, err
		}
		if p.isOp("(") {
			return value{}, pyCode(p.lx.errAt(t.line, t.col, "function call %s(...) is Python code; write the resulting literal value instead", t.text))
		}
		return value{}, pyCode(p.lx.errAt(t.line, t.col, "variable reference %q is Python code; only literal values (strings, numbers, lists) are supported", t.text))
	case tokOp:
		switch t.text {
		case "-", "+":
			if err := p.advance(); err != nil {
				return value{}, err
			}
			switch p.tok.kind {
			case tokInt:
				n := p.tok.num
				if t.text == "-" {
					n = -n
				}
				return value{kind: kindInt, num: n, line: t.line, col: t.col}, p.advance()
			case tokFloat:
				f := p.tok.flt
				if t.text == "-" {
					f = -f
				}
				return value{kind: kindFloat, flt: f, line: t.line, col: t.col}, p.advance()
			}
			return value{}, p.errHere("expected a number after %q, found %s", t.text, describe(p.tok))
		case "[", "(":
			return p.list(t)
		case "{":
			return value{}, p.errHere("dictionaries are not supported in a config")
		}
	}
	return value{}, p.errHere("expected a value, found %s", describe(t))
}

// list reads [a, b, ...] or (a, b, ...), allowing a trailing comma.
func (p *pyParser) list(open token) (value, error) {
	closer := "]"
	if open.text == "(" {
		closer = ")"
	}
	if p.depth >= maxListDepth {
		return value{}, p.errHere("lists nested deeper than %d levels", maxListDepth)
	}
	p.depth++
	defer func() { p.depth-- }()
	if err := p.advance(); err != nil {
		return value{}, err
	}
	v := value{kind: kindList, line: open.line, col: open.col}
	for {
		if p.isOp(closer) {
			return v, p.advance()
		}
		if p.tok.kind == tokEOF {
			return value{}, p.lx.errAt(open.line, open.col, "%q opened here is not closed", open.text)
		}
		e, err := p.expr()
		if err != nil {
			return value{}, err
		}
		v.list = append(v.list, e)
		switch {
		case p.isOp(","):
			if err := p.advance(); err != nil {
				return value{}, err
			}
		case p.isOp(closer):
		case p.tok.kind == tokName && p.tok.text == "for":
			return value{}, pyCode(p.errHere("list comprehension is Python code, not a literal value"))
		case p.tok.kind == tokEOF:
			return value{}, p.lx.errAt(open.line, open.col, "%q opened here is not closed", open.text)
		default:
			return value{}, p.errHere("expected , or %s in list, found %s", closer, describe(p.tok))
		}
	}
}

func (p *pyParser) unexpectedAfterValue() error {
	t := p.tok
	if t.kind == tokName {
		if what, ok := pythonKeywords[t.text]; ok {
			return pyCode(p.errHere("%s (%q) is Python code, not a literal value", what, t.text))
		}
	}
	return p.errHere("expected end of line after the value, found %s", describe(t))
}

func describe(t token) string {
	switch t.kind {
	case tokEOF:
		return "end of file"
	case tokNewline:
		return "end of line"
	case tokName:
		return fmt.Sprintf("name %q", t.text)
	case tokInt, tokFloat:
		return fmt.Sprintf("number %s", t.text)
	case tokString:
		return fmt.Sprintf("string %q", t.str)
	}
	return fmt.Sprintf("%q", t.text)
}
