package jsondepth

import "testing"

func TestArrayLen(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		isOK bool
	}{
		{`[]`, 0, true},
		{` [ ] `, 0, true},
		{`[1]`, 1, true},
		{`[1,2,3]`, 3, true},
		{`[{"a":[1,2],"b":"x,y]"},[3,4],"\"],"]`, 3, true},
		{`[{}]`, 1, true},
		{`[[]] ,[1,2]`, 1, true}, // what follows the array is not read
		{`{"a":[1]}`, 0, false},
		{`"[1,2]"`, 0, false},
		{``, 0, false},
		{`[1,2`, 0, false},
	}
	for _, c := range cases {
		if n, ok := ArrayLen([]byte(c.in)); n != c.n || ok != c.isOK {
			t.Errorf("ArrayLen(%s) = %d, %v; want %d, %v", c.in, n, ok, c.n, c.isOK)
		}
	}
}
