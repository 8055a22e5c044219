// Reference outputs of the two JavaScript-world networks, run as their own libraries run them.
//
//   node tfjs_reference.js faceres MODEL.json CROPS.u8 N SIZE OUT.json
//   node tfjs_reference.js faceapi MANIFEST.json CROPS.u8 N SIZE OUT.json
//
// CROPS.u8: N x SIZE x SIZE x 3 uint8 RGB face crops (row-major). OUT.json gets every output as nested
// lists. faceres: pure-JS @tensorflow/tfjs (cpu backend), the graph model loaded from memory, input in
// BGR minus the ImageNet means (how Human feeds it). faceapi: @vladmandic/face-api's own node-wasm build,
// its ageGenderNet loaded from the weights manifest, predictAgeAndGender-style forward on the crops.
// NODE_PATH must name the folder holding node_modules (@tensorflow/*, @vladmandic/face-api).
"use strict";
const fs = require("fs");
const path = require("path");

function readCrops(file, n, size) {
  const buf = fs.readFileSync(file);
  if (buf.length !== n * size * size * 3) throw new Error(`${file}: expected ${n}x${size}x${size}x3 bytes`);
  return new Int32Array(buf);
}

async function faceres(tf, modelJson, crops, n, size) {
  const model = JSON.parse(fs.readFileSync(modelJson, "utf8"));
  const dir = path.dirname(modelJson);
  const weightSpecs = [];
  const parts = [];
  for (const group of model.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) parts.push(fs.readFileSync(path.join(dir, p)));
  }
  const data = Buffer.concat(parts);
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  const graph = await tf.loadGraphModel(tf.io.fromMemory({ modelTopology: model.modelTopology, weightSpecs, weightData }));
  const rgb = tf.tensor4d(crops, [n, size, size, 3], "int32").toFloat();
  const bgr = tf.reverse(rgb, -1).sub(tf.tensor1d([103.939, 116.779, 123.68]));
  const names = ["age_pred/Softmax", "gender_pred/Sigmoid", "global_pooling/Mean"];
  const outs = graph.execute(bgr, names);
  const result = {};
  names.forEach((name, i) => { result[name] = outs[i].arraySync(); });
  return result;
}

async function faceapi(manifestJson, crops, n, size) {
  const faceApi = require("@vladmandic/face-api/dist/face-api.node-wasm.js");
  const tf = faceApi.tf;
  await tf.setBackend("wasm");
  await tf.ready();
  const manifest = JSON.parse(fs.readFileSync(manifestJson, "utf8"));
  const dir = path.dirname(manifestJson);
  const weights = [];
  const parts = [];
  for (const group of manifest) {
    weights.push(...group.weights);
    for (const p of group.paths) parts.push(fs.readFileSync(path.join(dir, p)));
  }
  const data = Buffer.concat(parts);
  const map = tf.io.decodeWeights(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength), weights);
  faceApi.nets.ageGenderNet.loadFromWeightMap(map);
  const input = tf.tensor4d(crops, [n, size, size, 3], "int32").toFloat();
  const netInput = await faceApi.toNetInput(tf.unstack(input));  // a batch of 3-D tensors, as the library takes them
  const out = faceApi.nets.ageGenderNet.forwardInput(netInput);
  return { age: out.age.arraySync(), gender_softmax: out.gender.arraySync(), backend: tf.getBackend() };
}

async function main() {
  const [kind, model, cropsFile, nText, sizeText, outFile] = process.argv.slice(2);
  const n = parseInt(nText, 10);
  const size = parseInt(sizeText, 10);
  const crops = readCrops(cropsFile, n, size);
  let result;
  if (kind === "faceres") {
    const tf = require("@tensorflow/tfjs");
    await tf.setBackend("cpu");
    result = await faceres(tf, model, crops, n, size);
    result.backend = tf.getBackend();
  } else if (kind === "faceapi") {
    result = await faceapi(model, crops, n, size);
  } else {
    throw new Error(`unknown network kind ${kind} (faceres or faceapi)`);
  }
  fs.writeFileSync(outFile, JSON.stringify(result));
}

main().catch((err) => { console.error(err.stack || String(err)); process.exit(1); });
