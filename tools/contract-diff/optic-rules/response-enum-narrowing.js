// Local optic ruleset: treat REMOVING a value from a response-property enum as breaking.
// optic's built-in `breaking-changes` deliberately does not (a server returning fewer values
// cannot break a tolerant reader), but this project treats it as a contract break because
// clients may echo/round-trip or persist the value set. Loaded via optic-standard.yml.
const { Ruleset, PropertyRule, RuleError } = require('@useoptic/rulesets-base');

const enumOf = (raw) => (raw && Array.isArray(raw.enum) ? raw.enum : raw && 'const' in raw ? [raw.const] : null);

const responseEnumNarrowing = new PropertyRule({
  name: 'prevent removing response enum values',
  matches: (property) => enumOf(property.raw) !== null,
  rule: (property) => {
    property.changed((before, after) => {
      if ('inRequest' in after.location.conceptualLocation) return; // request side: built-in rule covers it
      const b = enumOf(before.raw), a = enumOf(after.raw);
      if (!b || !a) return;
      const removed = b.filter((v) => !a.some((x) => JSON.stringify(x) === JSON.stringify(v)));
      if (removed.length)
        throw new RuleError({ message: `cannot remove enum value(s) ${removed.map((v) => JSON.stringify(v)).join(', ')} from response property '${after.value.key}'. This is a breaking change.` });
    });
  },
});

// optic's loader uses module.exports itself as the ruleset module when __esModule is unset
module.exports = {
  configSchema: {},
  rulesetConstructor: () => new Ruleset({ name: 'response-enum-narrowing', rules: [responseEnumNarrowing] }),
};
