/**
 * CPU versions of the three matrix products of a Linear layer (matmul.ts), accumulating in f64.
 * Row-major like the GPU buffers; W is [N, K] (HF Linear layout).
 * @module
 */

/** y[m, n] = x[m] . W[n] (+ bias[n]) for x [M, K], W [N, K]: the forward, y = x W^T + b. */
export function matmulForwardRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  o: { k: number; bias?: ArrayLike<number> },
): Float64Array {
  const k = o.k;
  const rows = x.length / k;
  const n = w.length / k;
  const y = new Float64Array(rows * n);
  for (let m = 0; m < rows; m++) {
    for (let j = 0; j < n; j++) {
      let s = o.bias ? o.bias[j] : 0;
      for (let r = 0; r < k; r++) s += x[m * k + r] * w[j * k + r];
      y[m * n + j] = s;
    }
  }
  return y;
}

/** dX[m, k] = sum over n of dY[m, n] W[n, k] for dY [M, N], W [N, K]: dX = dY W. */
export function matmulDxRef(
  dy: ArrayLike<number>,
  w: ArrayLike<number>,
  o: { k: number },
): Float64Array {
  const k = o.k;
  const n = w.length / k;
  const rows = dy.length / n;
  const dx = new Float64Array(rows * k);
  for (let m = 0; m < rows; m++) {
    for (let j = 0; j < n; j++) {
      const g = dy[m * n + j];
      for (let r = 0; r < k; r++) dx[m * k + r] += g * w[j * k + r];
    }
  }
  return dx;
}

/** dW[n, k] = sum over m of dY[m, n] X[m, k] for dY [M, N], X [M, K]: dW = dY^T X. */
export function matmulDwRef(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  o: { n: number; k: number },
): Float64Array {
  const { n, k } = o;
  const rows = dy.length / n;
  const dw = new Float64Array(n * k);
  for (let m = 0; m < rows; m++) {
    for (let j = 0; j < n; j++) {
      const g = dy[m * n + j];
      for (let r = 0; r < k; r++) dw[j * k + r] += g * x[m * k + r];
    }
  }
  return dw;
}
