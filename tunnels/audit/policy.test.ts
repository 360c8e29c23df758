import { SealnetError } from '../../common/errors.js';
import { formatDuration, parseDuration, parsePolicy, profile, PROFILES } from './policy.js';

function rejection(text: string): string {
  try {
    parsePolicy(text, 'p.json');
  } catch (err) {
    expect(err).toBeInstanceOf(SealnetError);
    expect((err as SealnetError).code).toBe('CONFIG_INVALID');
    return (err as Error).message;
  }
  throw new Error('expected the policy to be rejected');
}

describe('audit policy', () => {
  it('the default profile accepts WireGuard and AES-GCM IPsec; the FIPS profile only AES-GCM IPsec', () => {
    expect(profile('default').allowedAlgorithms).toEqual([
      'ipsec-esp-aes-gcm-128',
      'ipsec-esp-aes-gcm-256',
      'wireguard-chacha20poly1305',
    ]);
    expect(profile('fips').allowedAlgorithms).toEqual(['ipsec-esp-aes-gcm-128', 'ipsec-esp-aes-gcm-256']);
    expect(profile('fips').allowedAlgorithms).not.toContain('wireguard-chacha20poly1305');
    expect(() => profile('nist')).toThrow('unknown audit profile "nist" (known: default, fips)');
  });

  it('starts from a profile and overrides fields', () => {
    const p = parsePolicy(
      JSON.stringify({
        version: 1,
        profile: 'fips',
        name: 'bank',
        maxKeyAge: '7d',
        requireProbe: true,
        maxStatusAge: '5m',
      }),
      'p.json',
    );
    expect(p).toEqual({
      ...PROFILES.fips,
      allowedAlgorithms: ['ipsec-esp-aes-gcm-128', 'ipsec-esp-aes-gcm-256'],
      name: 'bank',
      maxKeyAgeSeconds: 7 * 86400,
      requireProbe: true,
      maxStatusAgeSeconds: 300,
    });
    expect(parsePolicy('{"version":1}', 'p.json')).toEqual(profile('default'));
    expect(
      parsePolicy(
        '{"version":1,"allowedAlgorithms":["wireguard-chacha20poly1305"],"requireFailClosed":false}',
        'p.json',
      ),
    ).toMatchObject({ allowedAlgorithms: ['wireguard-chacha20poly1305'], requireFailClosed: false });
  });

  it.each([
    ['not JSON', '{"version":1,', 'invalid audit policy p.json: not valid JSON'],
    ['not an object', '[1]', 'must be a JSON object'],
    ['no version', '{}', 'version must be 1, got undefined'],
    ['a future version', '{"version":2}', 'version must be 1, got 2'],
    ['an unknown field (a typo)', '{"version":1,"maxKeyAgeDays":3}', 'maxKeyAgeDays is not a known field'],
    ['an unknown profile', '{"version":1,"profile":"nist"}', 'profile must be one of "default", "fips", got "nist"'],
    [
      'an unknown algorithm',
      '{"version":1,"allowedAlgorithms":["aes-cbc"]}',
      'allowedAlgorithms[0] is "aes-cbc"; known algorithms:',
    ],
    ['an empty algorithm list', '{"version":1,"allowedAlgorithms":[]}', 'allowedAlgorithms must be a non-empty list'],
    [
      'a duplicate algorithm',
      '{"version":1,"allowedAlgorithms":["ipsec-esp-aes-gcm-128","ipsec-esp-aes-gcm-128"]}',
      'lists "ipsec-esp-aes-gcm-128" twice',
    ],
    ['a number as duration', '{"version":1,"maxKeyAge":3600}', 'maxKeyAge must be a duration such as "90d"'],
    ['a zero duration', '{"version":1,"maxKeyAge":"0d"}', 'maxKeyAge must be a duration'],
    ['a huge duration', '{"version":1,"maxStatusAge":"9999d"}', 'maxStatusAge must be a duration'],
    [
      'a string as boolean',
      '{"version":1,"requireFailClosed":"yes"}',
      'requireFailClosed must be true or false, got "yes"',
    ],
    ['an empty name', '{"version":1,"name":""}', 'name must be a non-empty string'],
    [
      'a string as requirePostQuantum',
      '{"version":1,"requirePostQuantum":"required"}',
      'requirePostQuantum must be true or false, got "required"',
    ],
  ])('rejects %s, naming the field', (_label, text, message) => {
    expect(rejection(text)).toContain(message);
  });

  it('reads requirePostQuantum, false unless a policy sets it (existing policies keep their meaning)', () => {
    expect(parsePolicy('{"version":1}', 'p.json').requirePostQuantum).toBe(false);
    expect(parsePolicy('{"version":1,"profile":"fips"}', 'p.json').requirePostQuantum).toBe(false);
    expect(parsePolicy('{"version":1,"requirePostQuantum":true}', 'p.json')).toEqual({
      ...profile('default'),
      requirePostQuantum: true,
    });
  });

  it('parses and formats durations', () => {
    expect([parseDuration('45s'), parseDuration('15m'), parseDuration('12h'), parseDuration('90d')]).toEqual([
      45, 900, 43200, 7776000,
    ]);
    expect([
      parseDuration('1.5h'),
      parseDuration('h'),
      parseDuration('01d'),
      parseDuration('-1s'),
      parseDuration('1w'),
    ]).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect([formatDuration(7776000), formatDuration(5400), formatDuration(61), formatDuration(900)]).toEqual([
      '90d',
      '90m',
      '61s',
      '15m',
    ]);
  });
});
