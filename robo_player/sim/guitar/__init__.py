"""The simulated guitar and bass: hidden truth, physics, ``sim://`` device, Karplus-Strong
audio and the piano roll with strings and frets (docs/guitar.md, "Simulator")."""
