/**
 * The agent's overlay gate (issue 15): beside an encapsulating CNI, fail-closed holds only when
 * the steering program can read the overlay's packets (routing/overlay.ts). Checked at start,
 * before anything is attached or published, and again on every periodic resync (a CNI may create
 * its device after the agent started).
 */
import { describeError, SealnetError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { overlayRefusal, type OverlayVerdict } from '../../routing/overlay.js';
import type { AgentConfig } from './config.js';

/**
 * Runs `check` and says whether the agent must refuse to run: with fail-closed steering (the
 * default), an overlay the guard cannot read, or a check that could not run, is a refusal (the
 * error says why and what to do). With steering off or fail-closed off the agent runs fail-open
 * by configuration anyway: a warning only.
 */
export async function overlayGate(
  config: AgentConfig,
  o: { check: () => Promise<OverlayVerdict>; log: Logger },
): Promise<SealnetError | undefined> {
  const enforcing = config.steering.enabled && config.steering.failClosed;
  let verdict: OverlayVerdict;
  try {
    verdict = await o.check();
  } catch (err) {
    const e = new SealnetError(
      'KERNEL_FEATURE_MISSING',
      "cannot list the node's links to look for overlay devices (ip -d -j link show); refusing to run, as an overlay could carry pod traffic past the guard",
      { cause: err },
    );
    if (enforcing) return e;
    o.log.warn({ err: describeError(err) }, e.message);
    return undefined;
  }
  if (verdict.guarded.length > 0)
    o.log.info(
      { overlays: verdict.guarded.map((l) => `${l.name} (${l.kind}${l.port === undefined ? '' : ` ${l.port}`})`) },
      'overlay devices found: pod packets inside them that bypass the tunnel are dropped at the underlay',
    );
  const refusal = overlayRefusal(verdict);
  if (refusal === undefined || enforcing) return refusal;
  o.log.warn(
    {},
    `${refusal.message.replace(/^refusing to run fail-open: /, '')}; running anyway, fail-open by configuration (steering disabled or not fail-closed)`,
  );
  return undefined;
}
