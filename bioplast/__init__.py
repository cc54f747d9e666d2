"""bioplast: recurrent rate networks written as equations, simulated on torch and Brian2."""

__version__ = "0.1.0"
