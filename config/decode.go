package config

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"bastion/upstream/provider"
)

// readDocument parses data as a single YAML document and returns its root
// node, or nil if data holds no document (an empty file).
func readDocument(data []byte, p *problems) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			p.add(syntaxError(err))
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.add(extra.Line, "", "holds more than one YAML document; put everything in one")
		return nil
	case !errors.Is(err, io.EOF):
		p.add(syntaxError(err))
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError splits a YAML syntax error into line, key (always empty) and
// message, in the argument order of problems.add.
func syntaxError(err error) (int, string, string, string) {
	msg := err.Error()
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, "", "%s", m[2]
	}
	return 0, "", "%s", strings.TrimPrefix(msg, "yaml: ")
}

// decoder fills Go values from a yaml.Node tree by reflection, strictly: a
// key the schema does not know is an error, as is a value of the wrong shape.
// Unlike yaml.Node.Decode it goes on after an error, so that one run reports
// every problem, and it records the line of every key path it meets in
// problems.lines and whether the key had a non-null value in set.
//
// Field names come from the yaml struct tags; fields tagged "-" are not part
// of the file. Aliases are followed and merge keys ("<<: *anchor") honoured,
// with keys written out in a mapping taking precedence over merged ones.
type decoder struct {
	p   *problems
	set map[string]bool
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// decode stores n into v. key is n's key path and line the line reported
// for it: the line of its key in the enclosing mapping, or of the list item.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, key string, line int) {
	n = resolveAlias(n)
	d.p.lines[key] = line
	if isNull(n) {
		return
	}
	d.set[key] = true
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.p.decodeError(line, key, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), key, line)
	case reflect.Struct:
		d.decodeStruct(n, v, key, line)
	case reflect.Map:
		d.decodeMap(n, v, key, line)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.p.decodeError(line, key, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), indexKey(key, i), item.Line)
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.p.decodeError(line, key, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.p.decodeError(line, key, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		var i int
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.p.decodeError(line, key, "expected an integer, got %s", describe(n))
			return
		}
		v.SetInt(int64(i))
	default:
		// Only reachable if a field of a type not handled above is added to
		// Config; the schema test decodes every field, so it catches this.
		panic("config: cannot decode into " + v.Type().String())
	}
}

// decodeStruct stores mapping n into struct v, field by field.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, key string, line int) {
	if n.Kind != yaml.MappingNode {
		d.p.decodeError(line, key, "expected a mapping, got %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	for _, kv := range d.pairs(n, key) {
		name := kv.key.Value
		fkey := joinKey(key, name)
		i, ok := fields[name]
		if !ok && d.registeredSection(v, kv, fkey) {
			continue
		}
		if !ok {
			d.p.decodeError(kv.key.Line, fkey, "unknown key")
			continue
		}
		d.decode(kv.value, v.Field(i), fkey, kv.key.Line)
	}
}

// registeredSection decodes kv into the section of the provider kind it
// names, if v is the providers mapping and the kind brings its own section
// type (provider.Descriptor.NewSection), and reports whether it did.
func (d *decoder) registeredSection(v reflect.Value, kv pair, fkey string) bool {
	ps, ok := v.Addr().Interface().(*Providers)
	if !ok {
		return false
	}
	desc, ok := provider.Lookup(kv.key.Value)
	if !ok || desc.NewSection == nil {
		return false
	}
	sec := desc.NewSection()
	d.decode(kv.value, reflect.ValueOf(sec).Elem(), fkey, kv.key.Line)
	if desc.Validate != nil {
		for _, err := range desc.Validate(sec) {
			d.p.decodeError(kv.key.Line, fkey, "%v", err)
		}
	}
	if ps.Sections == nil {
		ps.Sections = map[string]any{}
	}
	ps.Sections[desc.Name] = sec
	return true
}

// decodeMap stores mapping n into map v, whose keys are strings.
func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, key string, line int) {
	if n.Kind != yaml.MappingNode {
		d.p.decodeError(line, key, "expected a mapping, got %s", describe(n))
		return
	}
	m := reflect.MakeMap(v.Type())
	for _, kv := range d.pairs(n, key) {
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(kv.value, elem, joinKey(key, kv.key.Value), kv.key.Line)
		m.SetMapIndex(reflect.ValueOf(kv.key.Value).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
}

// pair is one key and value of a mapping.
type pair struct{ key, value *yaml.Node }

// pairs returns the entries of mapping n with merge keys expanded, reporting
// keys that are not strings and keys written twice.
func (d *decoder) pairs(n *yaml.Node, key string) []pair {
	return d.pairsOnce(n, key, map[*yaml.Node]bool{n: true})
}

// pairsOnce is pairs, expanding each merged mapping at most once: a later
// merge of a mapping already merged adds nothing (earlier entries win), and
// skipping it keeps a chain of anchors that merge each other twice from
// costing 2^n steps.
func (d *decoder) pairsOnce(n *yaml.Node, key string, merging map[*yaml.Node]bool) []pair {
	var out, merged []pair
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolveAlias(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergePairs(v, key, k.Line, merging)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.p.decodeError(k.Line, key, "expected a key name, got %s", describe(k))
			continue
		}
		if first := seen[k.Value]; first != nil {
			d.p.decodeError(k.Line, joinKey(key, k.Value), "duplicate key (first at line %d)", first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k, v})
	}
	for _, kv := range merged {
		if seen[kv.key.Value] == nil {
			seen[kv.key.Value] = kv.key
			out = append(out, kv)
		}
	}
	return out
}

// mergePairs returns the entries that the merge key value v brings into the
// mapping at key path key: those of a mapping, or of a list of mappings, the
// earlier ones taking precedence.
func (d *decoder) mergePairs(v *yaml.Node, key string, line int, merging map[*yaml.Node]bool) []pair {
	v = resolveAlias(v)
	switch v.Kind {
	case yaml.MappingNode:
		if merging[v] {
			return nil
		}
		merging[v] = true
		return d.pairsOnce(v, key, merging)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range v.Content {
			item = resolveAlias(item)
			if item.Kind != yaml.MappingNode {
				d.p.decodeError(item.Line, joinKey(key, "<<"), "expected a mapping to merge, got %s", describe(item))
				continue
			}
			if merging[item] {
				continue
			}
			merging[item] = true
			out = append(out, d.pairsOnce(item, key, merging)...)
		}
		return out
	}
	d.p.decodeError(line, joinKey(key, "<<"), "expected a mapping to merge, got %s", describe(v))
	return nil
}

// yamlFields maps the yaml names of struct type t to field indexes.
func yamlFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = i
	}
	return fields
}

// resolveAlias returns the node an alias stands for, or n if it is not one.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an empty value ("key:", "~" or "null").
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what n is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}
