// AudioWorklet processor of the web page's voice recording: hands each block of the first
// input channel to the page (app.js), which encodes the recording as a 16-bit PCM WAV. Its
// output stays silent, so what is recorded is not played back.
class Recorder extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor('llm4rec-recorder', Recorder);
