"""The site side: Flower ClientApp and the commands a hospital runs on its own machine."""
