/**
 * Certificates and keys for a throw-away API server, made with the `openssl` CLI (node:crypto
 * cannot sign X.509 certificates): a CA, the API server's serving certificate (loopback only),
 * an admin client certificate in `system:masters`, and the service-account signing key pair.
 * Everything is P-256 and valid for two days; files are 0600 in the run directory.
 */
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../harness/exec.js';

/** Paths of the generated material. */
export interface Pki {
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly adminCert: string;
  readonly adminKey: string;
  /** Service-account token signing key (private) and its public half. */
  readonly saKey: string;
  readonly saPub: string;
}

/** The in-cluster service IP of `kubernetes.default` (first address of the service range). */
export const SERVICE_CIDR = '10.96.0.0/16';
const SERVICE_IP = '10.96.0.1';

async function openssl(args: readonly string[]): Promise<void> {
  await run(['openssl', ...args], { timeoutMs: 30_000 });
}

async function signedCert(
  dir: string,
  o: { name: string; subject: string; ext: string; caCert: string; caKey: string },
): Promise<[string, string]> {
  const key = join(dir, `${o.name}.key`);
  const csr = join(dir, `${o.name}.csr`);
  const crt = join(dir, `${o.name}.crt`);
  const extFile = join(dir, `${o.name}.ext`);
  await writeFile(extFile, o.ext);
  await openssl([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    key,
    '-out',
    csr,
    '-subj',
    o.subject,
  ]);
  await openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    o.caCert,
    '-CAkey',
    o.caKey,
    '-set_serial',
    `0x${Date.now().toString(16)}${o.name.length}`,
    '-days',
    '2',
    '-out',
    crt,
    '-extfile',
    extFile,
  ]);
  await chmod(key, 0o600);
  return [crt, key];
}

/** Generates every file under `dir` (which must exist). */
export async function generatePki(dir: string): Promise<Pki> {
  const caCert = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    caKey,
    '-out',
    caCert,
    '-days',
    '2',
    '-subj',
    '/CN=sealnet-test-ca',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await chmod(caKey, 0o600);
  const sans = [
    'IP:127.0.0.1',
    'DNS:localhost',
    'DNS:kubernetes',
    'DNS:kubernetes.default',
    'DNS:kubernetes.default.svc',
    `IP:${SERVICE_IP}`,
  ];
  const [serverCert, serverKey] = await signedCert(dir, {
    name: 'apiserver',
    subject: '/CN=kube-apiserver',
    ext: `subjectAltName=${sans.join(',')}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n`,
    caCert,
    caKey,
  });
  const [adminCert, adminKey] = await signedCert(dir, {
    name: 'admin',
    subject: '/O=system:masters/CN=sealnet-test-admin',
    ext: 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n',
    caCert,
    caKey,
  });
  const saKey = join(dir, 'sa.key');
  const saPub = join(dir, 'sa.pub');
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', saKey]);
  await chmod(saKey, 0o600);
  await openssl(['pkey', '-in', saKey, '-pubout', '-out', saPub]);
  return { caCert, caKey, serverCert, serverKey, adminCert, adminKey, saKey, saPub };
}

/** How a kubeconfig authenticates. */
export type KubeconfigAuth = { readonly token: string } | { readonly clientCert: string; readonly clientKey: string };

/** Writes a single-context kubeconfig (0600; JSON is valid YAML). */
export async function writeKubeconfig(
  path: string,
  o: { server: string; caCert: string; user: string; auth: KubeconfigAuth },
): Promise<void> {
  const user =
    'token' in o.auth
      ? { token: o.auth.token }
      : { 'client-certificate': o.auth.clientCert, 'client-key': o.auth.clientKey };
  const cfg = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'sealnet-test', cluster: { server: o.server, 'certificate-authority': o.caCert } }],
    users: [{ name: o.user, user }],
    contexts: [{ name: 'sealnet-test', context: { cluster: 'sealnet-test', user: o.user } }],
    'current-context': 'sealnet-test',
  };
  await writeFile(path, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
}
