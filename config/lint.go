package config

import (
	"fmt"
	"slices"
	"strings"

	"bastion/upstream/provider"
)

// knownRegions are the AWS regions (commercial, China, GovCloud and the
// isolated partitions) as of the aws-sdk-go-v2 release in go.mod. A name
// that has the form of a region but is not here is refused as a typo; a
// region AWS opens later must be added here.
var knownRegions = []string{
	"af-south-1",
	"ap-east-1", "ap-east-2",
	"ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
	"ap-south-1", "ap-south-2",
	"ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7",
	"ca-central-1", "ca-west-1",
	"cn-north-1", "cn-northwest-1",
	"eu-central-1", "eu-central-2",
	"eu-north-1",
	"eu-south-1", "eu-south-2",
	"eu-west-1", "eu-west-2", "eu-west-3",
	"il-central-1",
	"me-central-1", "me-south-1",
	"mx-central-1",
	"sa-east-1",
	"us-east-1", "us-east-2",
	"us-west-1", "us-west-2",
	"us-gov-east-1", "us-gov-west-1",
	"us-iso-east-1", "us-iso-west-1", "us-isob-east-1", "us-isof-east-1", "us-isof-south-1", "eu-isoe-west-1",
}

// lint runs the checks for names that are well formed but cannot be what
// the operator meant: unknown AWS regions and target pattern prefixes are
// errors; policy groups that no user has are warnings (a group may be
// written before its first member).
func (c *checker) lint(cfg *Config) {
	if ls := cfg.Providers.Lightsail; ls != nil {
		c.checkKnownRegions("providers.lightsail.regions", ls.Regions)
	}
	if e := cfg.Providers.EC2; e != nil {
		c.checkKnownRegions("providers.ec2.regions", e.Regions)
	}
	if s3 := cfg.Audit.S3; s3 != nil && s3.Region != "" && regionRe.MatchString(s3.Region) && !slices.Contains(knownRegions, s3.Region) {
		c.errorf("audit.s3.region", "unknown AWS region %q%s", s3.Region, didYouMean(s3.Region, knownRegions))
	}
	if cw := cfg.Audit.CloudWatch; cw != nil && cw.Region != "" && regionRe.MatchString(cw.Region) && !slices.Contains(knownRegions, cw.Region) {
		c.errorf("audit.cloudwatch.region", "unknown AWS region %q%s", cw.Region, didYouMean(cw.Region, knownRegions))
	}
	for i, p := range cfg.Policies {
		key := indexKey("policies", i)
		for j, pat := range p.Targets {
			if msg := targetPatternProblem(pat); msg != "" {
				c.errorf(indexKey(key+".targets", j), "%s", msg)
			}
		}
		c.checkPolicyGroups(cfg, key+".groups", p.Groups)
	}
	c.lintRDP(cfg)
}

// checkKnownRegions refuses well-formed region names AWS does not have
// (the form itself is checked by checkAWS).
func (c *checker) checkKnownRegions(key string, regions []string) {
	for i, r := range regions {
		if regionRe.MatchString(r) && !slices.Contains(knownRegions, r) {
			c.errorf(indexKey(key, i), "unknown AWS region %q%s", r, didYouMean(r, knownRegions))
		}
	}
}

// checkPolicyGroups warns about groups that no user in users has: such a
// policy lets nobody in.
func (c *checker) checkPolicyGroups(cfg *Config, key string, groups []string) {
	if c.bad["users"] {
		return
	}
	var have []string
	for _, u := range cfg.Users {
		for _, g := range u.Groups {
			if !slices.Contains(have, g) {
				have = append(have, g)
			}
		}
	}
	for j, g := range groups {
		if g != "" && !slices.Contains(have, g) {
			c.warnf(indexKey(key, j), "no user has group %q, so this policy lets nobody in%s", g, didYouMean(g, have))
		}
	}
}

// targetPatternProblem returns why a policy target pattern cannot match
// anything, or "" if it can. The grammar is "[provider:][region:]glob" or
// "[provider:]tag:KEY=GLOB" (auth.Policy's matchTarget).
func targetPatternProblem(pat string) string {
	rest := pat
	for _, p := range provider.Names() {
		if r, ok := strings.CutPrefix(rest, p+":"); ok {
			rest = r
			break
		}
	}
	if kv, ok := strings.CutPrefix(rest, "tag:"); ok {
		switch k, _, ok := strings.Cut(kv, "="); {
		case k == "":
			return fmt.Sprintf("%q: a tag pattern is tag:KEY=VALUE, such as tag:env=staging; the key is missing", pat)
		case !ok:
			return fmt.Sprintf("%q: a tag pattern is tag:KEY=VALUE, such as tag:env=staging (tag:%s=* for any value)", pat, k)
		}
		return ""
	}
	prefix, _, ok := strings.Cut(rest, ":")
	if !ok {
		return ""
	}
	if strings.ContainsAny(prefix, "*?[") || slices.Contains(knownRegions, prefix) {
		return "" // a region or a region pattern
	}
	if rest != pat {
		return fmt.Sprintf("%q: unknown region %q after the provider%s", pat, prefix, didYouMean(prefix, knownRegions))
	}
	var candidates []string
	for _, c := range append(append([]string{"tag"}, provider.Names()...), knownRegions...) {
		candidates = append(candidates, c+":")
	}
	return fmt.Sprintf("%q: unknown prefix %q (want %s, tag:KEY=VALUE or a region)%s", pat, prefix+":", strings.Join(provider.Prefixes(), ", "), didYouMean(prefix+":", candidates))
}

// didYouMean returns `; did you mean "X"?` for the candidate closest to s,
// if one is within a small edit distance, else "". Names longer than 64
// bytes get no suggestion (the distance costs their length squared).
func didYouMean(s string, candidates []string) string {
	if len(s) > 64 {
		return ""
	}
	best, bestD := "", 0
	for _, c := range candidates {
		if len(c) > 64 {
			continue
		}
		if d := editDistance(s, c); best == "" || d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > max(1, len(s)/4) || bestD == 0 {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// editDistance returns the Damerau–Levenshtein distance (adjacent
// transpositions count one) between a and b.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
