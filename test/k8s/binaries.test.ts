import { parseBinaryPaths } from './binaries.js';

describe('parseBinaryPaths', () => {
  it('reads the four NAME=/path lines of scripts/k8s-binaries.sh', () => {
    const out =
      'KUBE_APISERVER=/c/kubernetes-v1.36.4/kube-apiserver\nKUBECTL=/c/kubernetes-v1.36.4/kubectl\nETCD=/c/etcd-v3.6.8/etcd\nHELM=/c/helm-v3.22.0/helm\n';
    expect(parseBinaryPaths(out)).toEqual({
      kubeApiserver: '/c/kubernetes-v1.36.4/kube-apiserver',
      kubectl: '/c/kubernetes-v1.36.4/kubectl',
      etcd: '/c/etcd-v3.6.8/etcd',
      helm: '/c/helm-v3.22.0/helm',
    });
  });
  it('names the missing tool', () => {
    expect(() => parseBinaryPaths('KUBE_APISERVER=/a\nKUBECTL=/b\nETCD=/c\n')).toThrow('no HELM= line');
  });
});
